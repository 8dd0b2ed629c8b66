/* engine/dot.c - to be written */
#include "internal.h"
