/*
 * commands.h - the hlpt subcommands; tools/hlpt.c dispatches to them by name. Each takes the argv
 * of its subcommand (argv[0] is the subcommand's name) and returns the process exit status.
 */
#ifndef HLPT_COMMANDS_H
#define HLPT_COMMANDS_H

int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_forward(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_grad(int argc, char **argv);
int cmd_train(int argc, char **argv);
/* files, jobs, adapters, complete, chat: the daemon client (argv[0] names which). */
int cmd_client(int argc, char **argv);
int cmd_eval(int argc, char **argv);

#endif
