/* hlptd - placeholder entry point until the daemon lands. */
#include <stdio.h>
int main(void) {
    fprintf(stderr, "hlptd: not built yet\n");
    return 1;
}
