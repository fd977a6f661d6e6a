/* Unit tests for shared/detect/cusum.c (being written). */
#include "detect/cusum.h"

int main(void)
{
    return 0;
}
