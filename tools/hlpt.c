/* hlpt - placeholder entry point until the command line lands. */
#include <stdio.h>
int main(void) {
    fprintf(stderr, "hlpt: not built yet\n");
    return 1;
}
