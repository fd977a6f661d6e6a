/* Unit tests for shared/detect/threshold.c (being written). */
#include "detect/threshold.h"

int main(void)
{
    return 0;
}
