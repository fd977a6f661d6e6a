/* Unit tests for shared/detect/mad.c (being written). */
#include "detect/mad.h"

int main(void)
{
    return 0;
}
