/*
 * test_locale.c - a program that sets a locale whose decimal point is a
 * comma (de_DE) still reads and writes the nn layer's numbers with '.':
 * architecture strings, initialiser, activation and schedule specs, CSV
 * files and the training log. The locale is made with localedef into a
 * temporary directory when the system has none (Debian's locales package
 * holds its source; tests/run installs it).
 */
#include "../engine/test_util.h"

#include "tapegrad_io.h"
#include "tapegrad_nn.h"
#include "tapegrad_train.h"

#include <errno.h>
#include <locale.h>
#include <unistd.h>

static char locale_dir[] = "/tmp/tg_locale_XXXXXX";
static bool made_dir;

/* Switches the process to de_DE.UTF-8, made here if need be. */
static int decimal_comma(void **state)
{
	(void)state;
	if (!setlocale(LC_ALL, "de_DE.UTF-8")) {
		if (!mkdtemp(locale_dir))
			fail_msg("mkdtemp: %s", strerror(errno));
		made_dir = true;
		char cmd[256];
		snprintf(cmd, sizeof cmd, "localedef -i de_DE -f UTF-8 %s/de_DE.UTF-8 >/dev/null 2>&1",
			 locale_dir);
		if (system(cmd) != 0)
			fail_msg("localedef could not make de_DE.UTF-8 (Debian's locales package "
				 "has its source)");
		setenv("LOCPATH", locale_dir, 1);
		if (!setlocale(LC_ALL, "de_DE.UTF-8"))
			fail_msg("de_DE.UTF-8 made in %s cannot be set", locale_dir);
	}
	/* the locale is in effect: the C library's own printf writes a comma */
	char buf[16];
	snprintf(buf, sizeof buf, "%g", 0.5);
	assert_string_equal(buf, "0,5");
	return 0;
}

static int back_to_c(void **state)
{
	(void)state;
	setlocale(LC_ALL, "C");
	if (made_dir) {
		char cmd[256];
		snprintf(cmd, sizeof cmd, "rm -rf %s", locale_dir);
		if (system(cmd) != 0)
			fail_msg("%s could not be removed", locale_dir);
	}
	return 0;
}

static void specs_read_and_write_a_decimal_point(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	char buf[256];

	tg_act act;
	assert_int_equal(tg_act_parse(ctx, "leaky_relu:0.125", &act), 0);
	assert_true(act.kind == TG_ACT_LEAKY_RELU && act.alpha == 0.125);
	assert_string_equal(tg_act_str(act, buf, sizeof buf), "leaky_relu:0.125");

	tg_init init;
	assert_int_equal(tg_init_parse(ctx, "std:0.05", &init), 0);
	assert_true(init.std == 0.05);
	assert_string_equal(tg_init_str(init, buf, sizeof buf), "std:0.05");

	tg_schedule s;
	assert_int_equal(tg_schedule_parse(ctx, "step:10:0.5", 0.1, 30, &s), 0);
	assert_true(s.gamma == 0.5);

	const char *arch = "linear:4:3,ln:3:0.001,leaky_relu:0.25,dropout:0.5,linear:3:2";
	tg_module *m = tg_model_parse(ctx, arch, NULL);
	if (!m)
		fail_msg("%s", tg_error(ctx));
	assert_true(tg_module_spec(m, buf, sizeof buf) > 0);
	assert_string_equal(buf, arch);
	tg_module *again = tg_model_parse(ctx, buf, NULL);
	if (!again)
		fail_msg("%s", tg_error(ctx));
	tg_module_free(again);
	tg_module_free(m);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

static void a_csv_file_and_the_training_log_keep_their_decimal_points(void **state)
{
	(void)state;
	tg_ctx *ctx = tg_ctx_new(1);
	char data[] = "/tmp/tg_locale_csv_XXXXXX";
	int fd = mkstemp(data);
	assert_true(fd >= 0);
	FILE *f = fdopen(fd, "w");
	fputs("x,y\n0.5,1.25\n1.5,3.25\n2.5,5.25\n3.5,7.25\n", f);
	fclose(f);
	tg_csv_options o = TG_CSV_DEFAULTS;
	o.float_targets = true;
	tg_dataset ds;
	if (tg_load_csv(ctx, data, &o, &ds))
		fail_msg("%s", tg_error(ctx));
	unlink(data);
	assert_int_equal(ds.n, 4);
	assert_true(ds.x[0] == 0.5f && ds.x[3] == 3.5f && ds.t[0] == 1.25f && ds.t[3] == 7.25f);

	tg_module *m = tg_model_parse(ctx, "linear:1:1", NULL);
	tg_tensor *params[2];
	size_t np = tg_module_params(m, params, 2);
	tg_optim_opts oo = tg_optim_defaults(TG_SGD);
	tg_optim *opt = tg_optim_new(ctx, params, np, &oo);
	char log[] = "/tmp/tg_locale_log_XXXXXX";
	fd = mkstemp(log);
	assert_true(fd >= 0);
	close(fd);
	tg_train_opts to = tg_train_defaults();
	to.progress = TG_PROGRESS_OFF;
	to.out = NULL;
	to.epochs = 2;
	to.batch = 2;
	to.log_path = log;
	tg_task task = { .loss = TG_LOSS_MSE };
	if (tg_fit(m, opt, &task, &ds, NULL, &ds, &to, NULL))
		fail_msg("%s", tg_error(ctx));

	/* every row has the header's fields, each a number written with '.' */
	FILE *in = fopen(log, "r");
	assert_non_null(in);
	char line[1024];
	assert_non_null(fgets(line, sizeof line, in));
	int fields = 1;
	for (const char *c = line; *c; c++)
		fields += *c == ',';
	int rows = 0;
	while (fgets(line, sizeof line, in)) {
		int n = 1;
		for (const char *c = line; *c; c++)
			n += *c == ',';
		if (n != fields)
			fail_msg("row %d has %d fields, the header %d: %s", rows + 1, n, fields, line);
		if (!strchr(line, '.'))
			fail_msg("row %d has no decimal point: %s", rows + 1, line);
		/* the third field, train_loss, reads back whole in the C locale */
		const char *p = strchr(strchr(line, ',') + 1, ',') + 1;
		setlocale(LC_NUMERIC, "C");
		char *end;
		double loss = strtod(p, &end);
		setlocale(LC_NUMERIC, "de_DE.UTF-8");
		assert_true(loss > 0 && isfinite(loss) && *end == ',');
		rows++;
	}
	fclose(in);
	unlink(log);
	assert_int_equal(rows, 2);
	tg_optim_free(opt);
	tg_module_free(m);
	tg_dataset_free(&ds);
	assert_ctx_ok(ctx);
	tg_ctx_free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(specs_read_and_write_a_decimal_point),
		cmocka_unit_test(a_csv_file_and_the_training_log_keep_their_decimal_points),
	};
	return cmocka_run_group_tests(tests, decimal_comma, back_to_c);
}
