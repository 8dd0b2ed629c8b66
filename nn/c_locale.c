/*
 * c_locale.c - numbers in text in the "C" locale (c_locale.h): one locale
 * object made on first use and kept for the process, switched to for the
 * calling thread only (uselocale) around each call, so that other threads
 * and the program's own output keep the locale it chose. Where the object
 * cannot be made (out of memory), the calls run in the thread's locale.
 */
#include "c_locale.h"

#include <locale.h>
#include <pthread.h>
#include <stdlib.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static locale_t c_numbers;

static void make_c_numbers(void)
{
	c_numbers = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
}

/* Switches the calling thread to the "C" numbers; returns what to restore,
 * (locale_t)0 when nothing was switched. */
static locale_t begin(void)
{
	pthread_once(&once, make_c_numbers);
	return c_numbers ? uselocale(c_numbers) : (locale_t)0;
}

static void end(locale_t old)
{
	if (old)
		uselocale(old);
}

double tg_c_strtod(const char *s, char **endp)
{
	locale_t old = begin();
	double v = strtod(s, endp);
	end(old);
	return v;
}

int tg_c_snprintf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	locale_t old = begin();
	int n = vsnprintf(buf, size, fmt, ap);
	end(old);
	va_end(ap);
	return n;
}

int tg_c_fprintf(FILE *f, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	locale_t old = begin();
	int n = vfprintf(f, fmt, ap);
	end(old);
	va_end(ap);
	return n;
}
