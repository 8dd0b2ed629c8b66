/*
 * schedule.c - learning-rate schedules by epoch: constant, step,
 * exponential, cosine, linear warm-up then cosine, and reduce-on-plateau,
 * with the formulas of PyTorch's StepLR, ExponentialLR, CosineAnnealingLR
 * and ReduceLROnPlateau (mode "min", threshold_mode "rel", no cooldown).
 *
 * Every kind but plateau is a closed form of the epoch; plateau carries its
 * position (current rate, best loss, epochs without improvement) in the
 * struct, as plain numbers that tg_schedule_state hands to a checkpoint.
 */
#include "tapegrad.h"
#include "tapegrad_train.h"
#include "c_locale.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *tg_schedule_name(tg_schedule_kind kind)
{
	static const char *const names[] = { "constant", "step",   "exponential",
					     "cosine",   "warmup", "plateau" };
	return (unsigned)kind <= TG_SCHED_PLATEAU ? names[kind] : "?";
}

tg_schedule tg_schedule_defaults(tg_schedule_kind kind, double base_lr, int64_t epochs)
{
	tg_schedule s = {
		.kind = kind,
		.base_lr = base_lr,
		.step_size = 10,
		.gamma = kind == TG_SCHED_EXPONENTIAL ? 0.95 : 0.1,
		.t_max = epochs,
		.warmup = 5,
		.min_lr = 0,
		.factor = 0.1,
		.patience = 10,
		.threshold = 1e-4,
		.epoch = -1,
		.lr = base_lr,
		.best = INFINITY,
		.bad_epochs = 0,
	};
	return s;
}

static const char *fault(const tg_schedule *s);

/* The closed form of every kind but plateau at epoch e >= 0. */
static double closed_form(const tg_schedule *s, int64_t e)
{
	double base = s->base_lr, min = s->min_lr;
	switch (s->kind) {
	case TG_SCHED_STEP:
		return base * pow(s->gamma, (double)(e / s->step_size));
	case TG_SCHED_EXPONENTIAL:
		return base * pow(s->gamma, (double)e);
	case TG_SCHED_COSINE:
		if (e >= s->t_max)
			return min;
		return min + (base - min) * (1 + cos(M_PI * (double)e / (double)s->t_max)) / 2;
	case TG_SCHED_WARMUP_COSINE: {
		if (e < s->warmup)
			return base * (double)(e + 1) / (double)(s->warmup + 1);
		int64_t k = e - s->warmup, t = s->t_max - s->warmup;
		if (k >= t)
			return min;
		return min + (base - min) * (1 + cos(M_PI * (double)k / (double)t)) / 2;
	}
	default:
		return base;
	}
}

/* ReduceLROnPlateau.step(loss): a loss below best * (1 - threshold) is an
 * improvement; after more than patience epochs without one the rate is
 * multiplied by factor (not below min_lr; a change under 1e-8 is skipped). */
static void plateau_step(tg_schedule *s, double loss)
{
	if (loss < s->best * (1 - s->threshold)) {
		s->best = loss;
		s->bad_epochs = 0;
	} else {
		s->bad_epochs++;
	}
	if (s->bad_epochs > s->patience) {
		double lr = fmax(s->lr * s->factor, s->min_lr);
		if (s->lr - lr > 1e-8)
			s->lr = lr;
		s->bad_epochs = 0;
	}
}

double tg_schedule_lr(tg_schedule *s, int64_t epoch, double val_loss)
{
	if (!s || fault(s) || epoch < 0)
		return NAN; /* a step size of 0 would divide by zero */
	if (s->kind == TG_SCHED_PLATEAU) {
		if (epoch > s->epoch && !isnan(val_loss))
			plateau_step(s, val_loss);
	} else {
		s->lr = closed_form(s, epoch);
	}
	if (epoch > s->epoch)
		s->epoch = epoch;
	return s->lr;
}

/* What is wrong with s's hyperparameters, or NULL. */
static const char *fault(const tg_schedule *s)
{
	if ((unsigned)s->kind > TG_SCHED_PLATEAU)
		return "an unknown kind";
	if (!(s->base_lr > 0) || !isfinite(s->base_lr))
		return "base_lr must be > 0";
	if (!(s->min_lr >= 0) || !(s->min_lr <= s->base_lr))
		return "min_lr must lie in [0, base_lr]";
	if (s->kind == TG_SCHED_STEP && s->step_size < 1)
		return "the step size must be >= 1 epoch";
	if ((s->kind == TG_SCHED_STEP || s->kind == TG_SCHED_EXPONENTIAL) &&
	    !(s->gamma > 0 && s->gamma <= 1))
		return "gamma must lie in (0, 1]";
	if (s->kind == TG_SCHED_COSINE && s->t_max < 1)
		return "cosine needs T >= 1 epoch";
	if (s->kind == TG_SCHED_WARMUP_COSINE && s->warmup < 1)
		return "the warm-up must be >= 1 epoch";
	if (s->kind == TG_SCHED_WARMUP_COSINE && s->t_max <= s->warmup)
		return "T must exceed the warm-up (T counts the warm-up epochs)";
	if (s->kind == TG_SCHED_PLATEAU && !(s->factor > 0 && s->factor < 1))
		return "the factor must lie in (0, 1)";
	if (s->kind == TG_SCHED_PLATEAU && s->patience < 0)
		return "the patience must be >= 0";
	if (s->kind == TG_SCHED_PLATEAU && !(s->threshold >= 0 && s->threshold < 1))
		return "the threshold must lie in [0, 1)";
	return NULL;
}

int tg_schedule_check(tg_ctx *ctx, const tg_schedule *s)
{
	if (!ctx || !tg_ok(ctx))
		return -1;
	if (!s) {
		tg_fail(ctx, TG_ENULL, "tg_schedule_check: the schedule is NULL");
		return -1;
	}
	const char *bad = fault(s);
	if (!bad)
		return 0;
	tg_fail(ctx, TG_EARG, "tg_schedule_check: %s schedule: %s",
		tg_schedule_name(s->kind), bad);
	return -1;
}

/* ---- parsing "step:10:0.5" ---------------------------------------------------- */

enum { MAX_FIELDS = 6 };

/* Splits s at ':' into at most MAX_FIELDS fields (s is changed); how many,
 * or -1 for too many. */
static int split(char *s, char **f)
{
	int n = 0;
	for (char *p = s;; p++) {
		if (n == MAX_FIELDS)
			return -1;
		f[n++] = p;
		p = strchr(p, ':');
		if (!p)
			return n;
		*p = '\0';
	}
}

static bool num(const char *s, double *out)
{
	char *end;
	errno = 0;
	double v = tg_c_strtod(s, &end);
	/* a number too small for a normal double (ERANGE, |v| below DBL_MIN) is
	 * still that number; one too large is infinite */
	if (!*s || *end || (errno && !(errno == ERANGE && fabs(v) < 1)) || !isfinite(v))
		return false;
	*out = v;
	return true;
}

static bool whole(const char *s, int64_t *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (!*s || *end || errno)
		return false;
	*out = v;
	return true;
}

/* Reads the optional fields of a cosine: ":T:MIN". */
static const char *cosine_fields(char **f, int n, tg_schedule *s)
{
	if (n > 3)
		return "cosine takes at most T and min_lr";
	if (n > 1 && !whole(f[1], &s->t_max))
		return "T is not a whole number of epochs";
	if (n > 2 && !num(f[2], &s->min_lr))
		return "min_lr is not a number";
	return NULL;
}

int tg_schedule_parse(tg_ctx *ctx, const char *spec, double base_lr, int64_t epochs,
		      tg_schedule *out)
{
	if (!ctx || !tg_ok(ctx))
		return -1;
	if (!spec || !out) {
		tg_fail(ctx, TG_ENULL, "tg_schedule_parse: %s is NULL", !spec ? "spec" : "out");
		return -1;
	}
	char *copy = strdup(spec);
	if (!copy) {
		tg_fail(ctx, TG_ENOMEM, "tg_schedule_parse: out of memory");
		return -1;
	}
	char *f[MAX_FIELDS], *second = strchr(copy, ',');
	if (second)
		*second++ = '\0';
	tg_schedule s = tg_schedule_defaults(TG_SCHED_CONSTANT, base_lr, epochs);
	const char *bad = NULL;
	int n = split(copy, f);
	if (n < 0) {
		bad = "too many fields";
	} else if (second && strcmp(f[0], "warmup") != 0) {
		bad = "only a warm-up is followed by a second schedule (\"warmup:5,cosine\")";
	} else if (!strcmp(f[0], "constant")) {
		if (n > 1)
			bad = "constant takes no fields";
	} else if (!strcmp(f[0], "step")) {
		s = tg_schedule_defaults(TG_SCHED_STEP, base_lr, epochs);
		if (n < 2 || n > 3)
			bad = "step takes the step size in epochs and optionally gamma";
		else if (!whole(f[1], &s.step_size))
			bad = "the step size is not a whole number of epochs";
		else if (n > 2 && !num(f[2], &s.gamma))
			bad = "gamma is not a number";
	} else if (!strcmp(f[0], "exp") || !strcmp(f[0], "exponential")) {
		s = tg_schedule_defaults(TG_SCHED_EXPONENTIAL, base_lr, epochs);
		if (n > 2)
			bad = "exponential takes only gamma";
		else if (n > 1 && !num(f[1], &s.gamma))
			bad = "gamma is not a number";
	} else if (!strcmp(f[0], "cosine")) {
		s = tg_schedule_defaults(TG_SCHED_COSINE, base_lr, epochs);
		bad = cosine_fields(f, n, &s);
	} else if (!strcmp(f[0], "warmup")) {
		s = tg_schedule_defaults(TG_SCHED_WARMUP_COSINE, base_lr, epochs);
		if (n != 2 || !whole(f[1], &s.warmup))
			bad = "warmup takes a whole number of epochs (\"warmup:5,cosine\")";
		else if (!second)
			bad = "a warm-up is followed by \",cosine\"";
		else if ((n = split(second, f)) < 0 || strcmp(f[0], "cosine") != 0)
			bad = "a warm-up is followed by \",cosine\"";
		else
			bad = cosine_fields(f, n, &s);
	} else if (!strcmp(f[0], "plateau")) {
		s = tg_schedule_defaults(TG_SCHED_PLATEAU, base_lr, epochs);
		if (n > 5)
			bad = "plateau takes at most factor, patience, threshold and min_lr";
		else if (n > 1 && !num(f[1], &s.factor))
			bad = "the factor is not a number";
		else if (n > 2 && !whole(f[2], &s.patience))
			bad = "the patience is not a whole number of epochs";
		else if (n > 3 && !num(f[3], &s.threshold))
			bad = "the threshold is not a number";
		else if (n > 4 && !num(f[4], &s.min_lr))
			bad = "min_lr is not a number";
	} else {
		bad = "unknown schedule; constant, step:K[:G], exp[:G], cosine[:T[:MIN]], "
		      "warmup:W,cosine[:T[:MIN]] or plateau[:FACTOR[:PATIENCE[:THRESHOLD[:MIN]]]]";
	}
	free(copy);
	if (bad) {
		tg_fail(ctx, TG_EARG, "tg_schedule_parse: \"%s\": %s", spec, bad);
		return -1;
	}
	if (tg_schedule_check(ctx, &s)) {
		const char *why = strstr(tg_error(ctx), "schedule: ");
		char msg[256];
		snprintf(msg, sizeof msg, "%s", why ? why + 10 : tg_error(ctx));
		tg_clear_error(ctx);
		tg_fail(ctx, TG_EARG, "tg_schedule_parse: \"%s\": %s", spec, msg);
		return -1;
	}
	*out = s;
	return 0;
}

/* ---- position, for checkpoints -------------------------------------------------- */

int tg_schedule_state(const tg_schedule *s, double *out, size_t n)
{
	if (!s || !out || n < TG_SCHEDULE_STATE)
		return -1;
	out[0] = (double)s->kind;
	out[1] = (double)s->epoch;
	out[2] = s->lr;
	out[3] = s->best;
	out[4] = (double)s->bad_epochs;
	return TG_SCHEDULE_STATE;
}

int tg_schedule_set_state(tg_ctx *ctx, tg_schedule *s, const double *v, size_t n)
{
	if (!ctx || !tg_ok(ctx))
		return -1;
	if (!s || !v) {
		tg_fail(ctx, TG_ENULL, "tg_schedule_set_state: %s is NULL",
			!s ? "the schedule" : "the values");
		return -1;
	}
	const char *bad = NULL;
	if (n != TG_SCHEDULE_STATE)
		bad = "a schedule's state is 5 numbers";
	else if (v[0] != (double)s->kind)
		bad = "the state is of another kind of schedule";
	else if (!(v[1] >= -1 && v[1] < 9e15 && v[1] == floor(v[1])))
		bad = "the epoch is not a whole number >= -1";
	else if (!(v[2] >= 0) || !isfinite(v[2]))
		bad = "the learning rate is not a number >= 0";
	else if (isnan(v[3]))
		bad = "the best loss is NaN";
	else if (!(v[4] >= 0 && v[4] < 9e15 && v[4] == floor(v[4])))
		bad = "the count of epochs without improvement is not a whole number >= 0";
	if (bad) {
		tg_fail(ctx, TG_EARG, "tg_schedule_set_state: %s (%zu values)", bad, n);
		return -1;
	}
	/* plateau only lowers its rate from base_lr, never below min_lr: any
	 * other rate is no position of this schedule */
	if (s->kind == TG_SCHED_PLATEAU &&
	    (v[2] > s->base_lr || (v[2] < s->min_lr && v[2] != s->base_lr))) {
		tg_fail(ctx, TG_EARG,
			"tg_schedule_set_state: the plateau's learning rate %g is %s %g; it lies "
			"between min_lr %g and base_lr %g",
			v[2], v[2] > s->base_lr ? "above its base_lr" : "below its min_lr",
			v[2] > s->base_lr ? s->base_lr : s->min_lr, s->min_lr, s->base_lr);
		return -1;
	}
	s->epoch = (int64_t)v[1];
	s->lr = v[2];
	s->best = v[3];
	s->bad_epochs = (int64_t)v[4];
	return 0;
}
