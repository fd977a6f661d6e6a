/* Unit tests for shared/detect/ensemble.c (being written). */
#include "detect/ensemble.h"

int main(void)
{
    return 0;
}
