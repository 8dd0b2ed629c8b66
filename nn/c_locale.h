/*
 * c_locale.h - numbers in text as the "C" locale writes them, whatever
 * locale the program has set: the architecture strings, specs, CSV files
 * and logs the nn layer reads and writes. A program that calls
 * setlocale(LC_ALL, "") in a German locale would otherwise read "0.5" as
 * not a number and write "0,5", which it could not read back elsewhere, or
 * which splits a CSV field in two. Not installed.
 */
#ifndef TG_C_LOCALE_H
#define TG_C_LOCALE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

/* strtod with '.' for the decimal point */
double tg_c_strtod(const char *s, char **end);
/* snprintf and fprintf with '.' for the decimal point */
int tg_c_snprintf(char *buf, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int tg_c_fprintf(FILE *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif /* TG_C_LOCALE_H */
