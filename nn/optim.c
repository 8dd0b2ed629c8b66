/* nn/optim.c - to be written */
#include "internal.h"
