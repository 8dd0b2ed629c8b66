/* engine/gradcheck.c - to be written */
#include "internal.h"
