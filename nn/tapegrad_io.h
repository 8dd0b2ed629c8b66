/* tapegrad_io.h */
#include "tapegrad.h"
