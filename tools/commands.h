/* commands.h - the `hlpt` subcommands: each takes main's argc/argv shifted so that argv[0] is the
 * command's name, prints its result on stdout and its errors on stderr, and returns the exit status
 * (0 success, 1 failure, 2 usage error). */
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
