/*
 * tapegrad_io.h - data sets in, models out: IDX and CSV loaders, splits,
 * mini-batches, and checkpoints.
 *
 * Data files are read through zlib, so every data set reader takes gzipped
 * and plain files alike (a checkpoint is read as it was saved: a gzipped
 * one is TG_EFORMAT saying so). Every function takes the context it
 * reports to: an unreadable file is TG_EIO (with the system's reason), a
 * file whose contents are wrong is TG_EFORMAT, and the message names the
 * file and the problem:
 *
 *	train-images-idx3-ubyte.gz: wrong magic 0x00000000, expected 0x00000803
 *	(IDX ubyte images)
 *
 * A failing function returns -1 (or NULL / false), frees whatever it had
 * allocated and leaves its outputs empty; sizes a file claims are checked
 * against caps, against the memory a load may take (tg_data_max_bytes) and
 * against the data actually present before anything that large is
 * allocated. Only regular files are read, so a FIFO or a device never
 * blocks or feeds a reader without end. Like ops, these functions do nothing (and fail) while
 * the context holds an error; the free functions always work.
 *
 * Train the seeds' two-layer net on Fashion-MNIST, one epoch:
 *
 *	tg_dataset train, test;
 *	if (tg_load_mnist(ctx, TG_FASHION_MNIST_DIR, &train, &test))
 *		fprintf(stderr, "%s\n", tg_error(ctx));
 *	tg_batcher *b = tg_batcher_new(ctx, &train, 100, 0);
 *	tg_batch batch;
 *	while (tg_batch_next(b, TG_F32, &batch)) {
 *		tg_tensor *loss = tg_cross_entropy(forward(batch.x), batch.labels);
 *		...
 *		tg_reset(ctx);
 *	}
 *	tg_batcher_free(b);
 *	tg_dataset_free(&train);
 *	tg_dataset_free(&test);
 */
#ifndef TAPEGRAD_IO_H
#define TAPEGRAD_IO_H

#include "tapegrad.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- data sets ------------------------------------------------------------ */

/* N samples of D features and, for each, either a class label (y, with
 * classes > 0) or T float targets (t, with tdim = T > 0; y is then NULL and
 * classes 0): classification, or regression and binary tasks. Memory from
 * malloc, owned by the struct: free with tg_dataset_free.
 *
 * A sample may have a shape of its own: IDX images are (1,rows,cols), the
 * UCI digits (1,8,8), so that batches come as (B,1,rows,cols) and a
 * convolution sees rows and columns (an MLP's first linear layer flattens
 * them again). ndim 0 means a flat row of D features, as CSV data is. */
enum { TG_SAMPLE_MAX_DIMS = 3 };

typedef struct tg_dataset {
	int64_t n;       /* N: samples */
	int64_t d;       /* D: features per sample */
	int32_t classes; /* labels lie in [0, classes); 0 with float targets */
	float *x;        /* (N,D) row-major; IDX pixels scaled to [0,1] */
	int32_t *y;      /* (N) class labels, or NULL */
	int64_t tdim;    /* T: float targets per sample; 0 with class labels */
	float *t;        /* (N,T) row-major float targets, or NULL */
	int ndim;        /* dims of one sample: 0 (flat, D) to TG_SAMPLE_MAX_DIMS */
	int64_t shape[TG_SAMPLE_MAX_DIMS]; /* one sample's shape, e.g. (C,H,W);
					    * its product is D */
} tg_dataset;

/* Caps on what a file may claim, checked before allocating: at most
 * TG_DATA_MAX_ELEMS feature values (N*D) and TG_DATA_MAX_CLASSES classes. */
#define TG_DATA_MAX_ELEMS ((int64_t)1 << 31)
#define TG_DATA_MAX_CLASSES 65536

/* The memory one load may take by default: a quarter of the machine's
 * physical memory, at most 4 GiB. An IDX pair whose headers claim more
 * (pixels as floats plus labels) is refused before a pixel is read; a CSV's
 * text read and data set together stay below it (tg_csv_options.max_bytes
 * changes it). */
TG_API int64_t tg_data_max_bytes(void);

/* Frees x, y and t and zeroes *ds; NULL or an empty struct is fine. */
TG_API void tg_dataset_free(tg_dataset *ds);
/* Gives each sample of ds the shape shape[0..ndim) (ndim 0: flat rows of
 * D); each size must be positive and their product D, else TG_ESHAPE naming
 * them. The data stay as they are: (N,D) row-major is (N,C,H,W) row-major.
 * 0 ok, -1 on error. */
TG_API int tg_dataset_reshape(tg_ctx *ctx, tg_dataset *ds, int ndim, const int64_t *shape);
/* The shape of a batch of n samples of ds into out (room for
 * 1 + TG_SAMPLE_MAX_DIMS): (n,D), or (n, ds->shape...). Returns its ndim. */
TG_API int tg_dataset_batch_shape(const tg_dataset *ds, int64_t n, int64_t *out);

/* ---- reading files ------------------------------------------------------- */
/* Every reader opens only regular files, without blocking: a FIFO, a device
 * (/dev/zero) or a directory is TG_EIO naming what it is, at once. Files
 * starting with gzip's magic bytes are inflated, others read as they are;
 * concatenated gzip members read as one stream, but anything else after the
 * compressed data is TG_EFORMAT, and so is a stream cut short. */

/* ---- IDX files (MNIST, Fashion-MNIST) ------------------------------------- */
/* Images: magic 0x00000803, then u32 N, rows, cols (big-endian), then
 * N*rows*cols pixel bytes. Labels: magic 0x00000801, u32 N, N label bytes.
 * Both counts must agree, and the data set they claim must fit in
 * tg_data_max_bytes(), before any pixel is read; a byte after the data is an
 * error. Pixels become floats p/255 (D = rows*cols), each sample shaped
 * (1,rows,cols). Labels must lie in
 * [0, classes); classes <= 0 means max label + 1. 0 ok, -1 on error (out is
 * then empty). */
TG_API int tg_load_idx(tg_ctx *ctx, const char *images, const char *labels, int classes,
		       tg_dataset *out);

/* Where Debian's dataset-fashion-mnist installs Fashion-MNIST. */
#define TG_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

/* Reads DIR/train-images-idx3-ubyte, train-labels-idx1-ubyte,
 * t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, each with ".gz" if that
 * name exists (a link to nothing is reported as such), as data sets of 10
 * classes (MNIST or Fashion-MNIST), or of the largest label + 1 over both
 * sets when that is more (EMNIST's letters, 1 to 26: 27). The four headers are checked first: the test
 * images must have the training images' size, and both sets together fit in
 * tg_data_max_bytes(). dir NULL means TG_FASHION_MNIST_DIR. 0 ok, -1 on
 * error (both outputs then empty). */
TG_API int tg_load_mnist(tg_ctx *ctx, const char *dir, tg_dataset *train, tg_dataset *test);

/* ---- CSV files ------------------------------------------------------------ */
/* One sample per line, numbers separated by commas; blank lines are skipped.
 * Lines end in LF, CRLF or CR; a UTF-8 byte-order mark is skipped. Every row
 * must have the same number of columns; the target columns hold either one
 * class label (an integer in [0, classes)) or, with float_targets, T float
 * targets (ds.t, in the order listed); the others are the features, in
 * order. Target columns are chosen by index (label_column for one, or
 * target_columns) or by their names in the header line (target_names),
 * which must then name every column: a header of more or fewer fields than
 * the rows (empty ones at its end aside) is an error naming both lines, as
 * it would shift the names.
 * Any field, in the header or a data row, may stand in double quotes as in
 * RFC 4180: commas inside are part of it and "" is one quote ("a,b" is the
 * name a,b; "1.5" and " 1.5 " the number 1.5). A quoted field ends on its line; one
 * whose closing quote is missing or followed by more than blanks is an
 * error naming the line and column. When the header was detected, errors
 * say so (a data row with a stray word is taken for a header).
 *
 *	tg_csv_options o = TG_CSV_DEFAULTS;   // diabetes.csv: 10 features, "progression"
 *	o.target_names = (const char *[]){ "progression" };
 *	o.ntargets = 1;
 *	o.float_targets = true;
 *	tg_load_csv(ctx, "diabetes.csv", &o, &ds);   // ds.t (442,1), ds.y NULL
 */
typedef enum {
	TG_CSV_HEADER_AUTO, /* skip the first line if a field is neither a number nor
			     * empty (an empty field is a missing value: an error) */
	TG_CSV_HEADER_YES,  /* always skip the first line */
	TG_CSV_HEADER_NO,   /* the first line is data */
} tg_csv_header;

typedef struct tg_csv_options {
	int label_column;     /* 0-based; negative counts from the end (-1: last) */
	tg_csv_header header;
	int classes;          /* labels in [0, classes); <= 0: max label + 1 */
	double scale;         /* features are divided by scale (> 0); 0 means 1 */
	int64_t max_rows;     /* more rows is an error; 0: TG_CSV_MAX_ROWS */
	/* Bytes the load may take (text read and data set); more is an error,
	 * found before it is allocated. 0: tg_data_max_bytes(); at least
	 * TG_CSV_MIN_BYTES (two chunks of text), else TG_EARG. */
	int64_t max_bytes;
	/* ntargets columns listed by index (0-based, negative from the end) or
	 * by name (target_names; needs a header line), borrowed for the call;
	 * not both (TG_EARG); both NULL: the one column label_column. More than one only with
	 * float_targets; at most TG_CSV_MAX_TARGETS. */
	int ntargets;
	const int *target_columns;
	const char *const *target_names;
	/* false: the target is a class label (ds.y); true: float values (ds.t,
	 * not scaled), for regression and binary tasks. */
	bool float_targets;
} tg_csv_options;

#define TG_CSV_MAX_ROWS ((int64_t)1 << 24)
#define TG_CSV_MAX_TARGETS 4096
#define TG_CSV_MIN_BYTES ((int64_t)1 << 17)

/* Label last, header detected, classes from the labels, no scaling, the
 * default caps. */
#define TG_CSV_DEFAULTS ((tg_csv_options){ .label_column = -1 })

/* opt NULL means TG_CSV_DEFAULTS. Errors name the line (1-based, counting
 * the header) and column: "iris.csv: line 7: 4 columns, expected 5". 0 ok,
 * -1 on error (out is then empty). */
TG_API int tg_load_csv(tg_ctx *ctx, const char *path, const tg_csv_options *opt,
		       tg_dataset *out);

/* Fisher's iris as shipped in demos/data/iris.csv (header line
 * "150,4,setosa,versicolor,virginica", then rows of 4 features and the class):
 * 150 x 4, 3 classes. A file without the header line reads whole (the
 * header is detected as TG_CSV_HEADER_AUTO does). */
TG_API int tg_load_iris(tg_ctx *ctx, const char *path, tg_dataset *out);
/* UCI handwritten digits as in demos/data/digits.csv.gz (1797 rows of 64
 * pixels 0..16 and the label, no header): 1797 x 64, 10 classes, pixels
 * divided by 16 into [0,1], each sample shaped (1,8,8). */
TG_API int tg_load_digits(tg_ctx *ctx, const char *path, tg_dataset *out);

/* ---- subsets -------------------------------------------------------------- */
/* Each output is a new data set (a copy); free it with tg_dataset_free. An
 * output may be src itself: src's rows are then replaced (its old memory
 * freed), and on error it stays as it was. */

/* Rows idx[0..n) of src, in that order (repeats allowed). */
TG_API int tg_dataset_subset(tg_ctx *ctx, const tg_dataset *src, const int64_t *idx,
			     int64_t n, tg_dataset *out);
/* The first min(n, src->n) rows; n >= 1. */
TG_API int tg_dataset_head(tg_ctx *ctx, const tg_dataset *src, int64_t n, tg_dataset *out);
/* Shuffles src's rows with the context's generator (the same seed gives the
 * same split) and puts the first n_val of them in val, the other N - n_val in
 * train, both in shuffled order. 1 <= n_val < N; train and val are two
 * data sets (TG_EARG otherwise). */
TG_API int tg_dataset_split(tg_ctx *ctx, const tg_dataset *src, int64_t n_val,
			    tg_dataset *train, tg_dataset *val);

/* ---- standardising ------------------------------------------------------- */
/* Per-feature (x - mean) / std with the mean and population standard
 * deviation of the training split only, applied to the training, validation
 * and test splits alike (so nothing of the held-out data leaks into
 * training); optionally the float targets too. A constant column gets std 1.
 * The numbers are f64 ctx tensors named "standardiser.mean",
 * "standardiser.std" (D) and "standardiser.target_mean",
 * "standardiser.target_std" (T, or NULL), so a checkpoint saves them with the
 * model's tensors (tg_standardiser_tensors lists them). They belong to the
 * context: there is nothing to free.
 *
 *	tg_standardiser s;
 *	tg_standardiser_fit(ctx, &train, true, &s);
 *	tg_standardiser_apply(ctx, &s, &train);
 *	tg_standardiser_apply(ctx, &s, &test);
 */
typedef struct tg_standardiser {
	int64_t d;                /* D: features */
	int64_t tdim;             /* T: targets standardised, 0: none */
	tg_tensor *mean, *std;    /* (D) f64 ctx */
	tg_tensor *target_mean, *target_std; /* (T) f64 ctx, or NULL */
} tg_standardiser;

/* Fits on train (targets: also its float targets; TG_EARG for class
 * labels). A NaN or an Inf among the values fitted is TG_EARG naming its
 * row and column. 0 ok, -1 on error (out zeroed). */
TG_API int tg_standardiser_fit(tg_ctx *ctx, const tg_dataset *train, bool targets,
			       tg_standardiser *out);
/* Standardises ds in place; its widths must be the fitted ones, and the
 * numbers (which a checkpoint may have loaded) f64 tensors of ctx, of those
 * widths, finite, each std > 0: TG_EARG naming the first that is not (one
 * missing is TG_ENULL, one of another context TG_ECTX), ds unchanged; so is
 * a value the standardising takes beyond single precision (far out on a
 * column of small spread). 0 ok, -1. */
TG_API int tg_standardiser_apply(tg_ctx *ctx, const tg_standardiser *s, tg_dataset *ds);
/* Puts s's tensors (2 or 4) into out (room for 4; may be NULL) and returns
 * how many: what a checkpoint saves beside the model's. */
TG_API size_t tg_standardiser_tensors(const tg_standardiser *s, tg_tensor **out);

/* ---- mini-batches --------------------------------------------------------- */

/* Rows idx[0..n) of ds as a step tensor (n,D), or (n,C,H,W) when the samples
 * have a shape (tg_dataset_batch_shape), of dtype dt; their labels go
 * to labels[0..n) (the caller's buffer; may be NULL; untouched for a data set
 * of float targets). NULL on error. step */
TG_API tg_tensor *tg_dataset_batch(tg_ctx *ctx, const tg_dataset *ds, const int64_t *idx,
				   int64_t n, tg_dtype dt, int32_t *labels);
/* The float targets of rows idx[0..n) as a step tensor (n,T) of dtype dt;
 * TG_EARG for a data set of class labels. NULL on error. step */
TG_API tg_tensor *tg_dataset_targets(tg_ctx *ctx, const tg_dataset *ds, const int64_t *idx,
				     int64_t n, tg_dtype dt);

enum {
	/* Each batch is B indices drawn uniformly with replacement, as the
	 * seeds' np.random.choice(train_size, batch_size) loop; there are no
	 * epochs and tg_batch_next always delivers. */
	TG_BATCH_REPLACE = 1,
	/* Shuffled epochs: drop the last batch of an epoch when it is short
	 * (by default it is delivered with fewer than B rows). */
	TG_BATCH_DROP_LAST = 2,
};

/* Walks a data set in mini-batches. By default in shuffled epochs: each
 * epoch draws a new permutation from the context's generator, and every
 * sample appears exactly once per epoch. */
typedef struct tg_batcher tg_batcher;

typedef struct tg_batch {
	tg_tensor *x;        /* (B,D), or (B,C,H,W) for images; step */
	const int32_t *y;    /* (B) labels; borrowed from the batcher until the next batch;
			      * NULL for a data set of float targets */
	tg_tensor *labels;   /* (B) i32 step: y as an index tensor; or NULL */
	tg_tensor *t;        /* (B,T) step, x's dtype: the float targets; or NULL */
	const int64_t *idx;  /* (B) the rows of the data set; borrowed likewise */
	int64_t n;           /* B: rows in this batch (fewer for a short last batch) */
	int64_t total;       /* rows of the whole batch this one is a shard of; n unsharded */
} tg_batch;

/* ds is borrowed and must outlive the batcher, and keep its N rows (in
 * shuffled epochs) and its kind of targets: a data set replaced in place
 * since (tg_dataset_subset into itself, tg_dataset_free) is TG_EARG at the
 * next tg_batch_next; make a new batcher for it. NULL on error (batch < 1;
 * TG_BATCH_DROP_LAST with batch > N would make empty epochs). malloc'd */
TG_API tg_batcher *tg_batcher_new(tg_ctx *ctx, const tg_dataset *ds, int64_t batch,
				  unsigned flags);
TG_API void tg_batcher_free(tg_batcher *b);
/* Delivers the next batch with x of dtype dt and returns true; returns false
 * once at the end of each epoch (the next call starts a new one) and on
 * error (then tg_ok(ctx) is false). */
TG_API bool tg_batch_next(tg_batcher *b, tg_dtype dt, tg_batch *out);
TG_API int64_t tg_batcher_epoch(const tg_batcher *b); /* epochs completed */
/* Data-parallel training: of each batch of m rows (drawn as before, from
 * the same permutation on every rank) deliver only rows [m part / parts,
 * m (part + 1) / parts), so the parts of one batch are disjoint and cover
 * it. 0 <= part < parts, and every batch, an epoch's short last one too,
 * must have at least parts rows: else TG_EARG here, before an epoch starts.
 * 0 ok, -1. */
TG_API int tg_batcher_shard(tg_batcher *b, int64_t part, int64_t parts);

/* ---- checkpoints ---------------------------------------------------------- */
/* A checkpoint holds named tensors (a model's parameters, its running
 * statistics, an optimizer's moments "fc1.W.m", ...) and, for resuming a
 * run, a few named numbers and strings: the model's architecture string, the
 * optimizer's step count, the schedule's position, the generator's state,
 * the epoch. Every tensor must have a name (tg_set_name), unique in the list,
 * or the call fails with TG_EARG before touching any file.
 *
 * Format, version 2 (integers little-endian):
 *	"TGCKPT\0\0"                    8 bytes of magic
 *	u32 version                     2
 *	u32 count                       number of tensors
 *	u32 entries                     number of metadata entries
 *	entries times:
 *	    u16 key length, key bytes (no terminating NUL)
 *	    u8 kind                     0 f64 numbers, 1 i64 numbers, 2 a string
 *	    u32 n                       numbers, or string bytes (no NUL)
 *	    n * 8 bytes, or n bytes
 *	count times:
 *	    u16 name length, name bytes (no terminating NUL)
 *	    u8 dtype                    0 f32, 1 f64, 2 i32, 3 i64
 *	    u8 ndim                     0..8
 *	    u64 shape[ndim]
 *	    data                        numel values of the dtype, little-endian
 *	u32 CRC32 (zlib's crc32) of every byte before it
 * Version 1 (tapegrad before states) is the same without the entries field
 * and the metadata, with f32/f64 tensors of at most 4 dimensions; it still
 * loads. Saves write version 2.
 *
 * The keys a resumable run writes (tg_state_set_* and friends):
 *	"arch"          string: tg_module_spec of the model
 *	"optim"         string: tg_optim_name;  "optim.steps": i64, tg_optim_steps;
 *	                "optim.param_steps": i64 x params, tg_optim_param_steps
 *	                (tg_state_optim writes the three, tg_state_restore_optim
 *	                reads them; a file without the last still loads)
 *	"schedule"      f64 numbers: tg_schedule_state
 *	"rng"           i64 x 4: the context's generator (tg_state_rng)
 *	"epoch", "iter" i64: epochs and optimizer steps completed
 *
 * Save and resume:
 *
 *	tg_state *st = tg_state_new(ctx);
 *	tg_state_add(st, params, np);                    // and running statistics
 *	tg_state_add(st, tg_optim_state(opt, &ns), ns);  // "fc1.W.m", ...
 *	tg_state_optim(st, opt);                         // its kind and step counts
 *	tg_state_set_string(st, "arch", arch);
 *	tg_state_set_i64(st, "epoch", &epoch, 1);
 *	tg_state_rng(st);
 *	tg_checkpoint_save_state(ctx, "run.ckpt", st);
 *	tg_state_free(st);
 *	...
 *	if (tg_checkpoint_read(ctx, "run.ckpt", &st) == 0) {
 *		tg_module *m = tg_model_parse(ctx, tg_state_string(st, "arch"), NULL);
 *		char why[512];
 *		tg_state_load_into(st, params, np, 0, why, sizeof why); // names not matched in why
 *		tg_state_restore_optim(st, opt);
 *		tg_state_restore_rng(st, ctx);
 *	}
 */
#define TG_CHECKPOINT_VERSION 2

/* Named tensors plus named numbers and strings, as a checkpoint holds them:
 * built with tg_state_new and tg_state_add/set_* for a save, or returned by
 * tg_checkpoint_read. malloc'd; free with tg_state_free. */
typedef struct tg_state tg_state;

TG_API tg_state *tg_state_new(tg_ctx *ctx); /* NULL on error */
TG_API void tg_state_free(tg_state *s);    /* NULL is fine */
/* Adds t[0..n): named, of s's context, names unique in the state (TG_EARG
 * otherwise). The tensors are borrowed: their values are read when the
 * state is saved, so they must outlive it (ctx tensors). 0 ok, -1. */
TG_API int tg_state_add(tg_state *s, tg_tensor *const *t, size_t n);
/* Sets key (1 to 65535 bytes) to a string or to n numbers (copied), in
 * place of what it held. 0 ok, -1. */
TG_API int tg_state_set_string(tg_state *s, const char *key, const char *value);
TG_API int tg_state_set_f64(tg_state *s, const char *key, const double *v, size_t n);
TG_API int tg_state_set_i64(tg_state *s, const char *key, const int64_t *v, size_t n);
/* The string under key, or NULL (no such key, or not a string). borrowed */
TG_API const char *tg_state_string(const tg_state *s, const char *key);
/* Copies up to n of the numbers under key into out (may be NULL) and
 * returns how many it holds; -1 when key holds no numbers of that kind. */
TG_API int64_t tg_state_f64(const tg_state *s, const char *key, double *out, size_t n);
TG_API int64_t tg_state_i64(const tg_state *s, const char *key, int64_t *out, size_t n);
/* Its tensors: how many, the name of the i-th (NULL past the end;
 * borrowed), and a step copy of one, named, by name (TG_EARG if absent). */
TG_API size_t tg_state_count(const tg_state *s);
TG_API const char *tg_state_name(const tg_state *s, size_t i);
TG_API tg_tensor *tg_state_tensor(tg_state *s, const char *name); /* step */
/* Stores the context's generator under "rng" (4 numbers; out of memory is
 * TG_ENOMEM in the context, which tg_ok then shows); restores it from there
 * (0 ok; -1, TG_EARG when the state has none). */
TG_API void tg_state_rng(tg_state *s);
TG_API int tg_state_restore_rng(const tg_state *s, tg_ctx *ctx);

/* Writes the state's tensors and metadata to path, atomically: to a
 * temporary file of its own in path's directory ("<path>.tmp.<pid>.<6 hex>",
 * created with O_EXCL), fsynced, renamed over path, then the directory
 * fsynced: a crash or a failed write never leaves a half-written file at
 * path, and threads or processes saving to the same path at once each leave
 * a whole file (the last rename wins). On failure the temporary file is
 * removed and whatever was at path is untouched. Temporaries
 * "<path>.tmp.<pid>.<6 hex>" (that name exactly, a regular file) whose
 * process no longer exists (a save killed mid-write) are removed by the
 * next save to path; other files, "<path>.tmp.<n>.txt" say, stay. When path is a symbolic
 * link the file it points at is written and the link stays. Only a regular
 * file is replaced: a FIFO, a device node, a socket or a directory at path
 * (or where its link leads) is TG_EIO naming what it is, and stays. A
 * tensor freed since tg_state_add is TG_ESTALE. 0 ok, -1 on error (TG_EIO names the path
 * and the system's reason). */
TG_API int tg_checkpoint_save_state(tg_ctx *ctx, const char *path, const tg_state *s);

/* A state of the tensors t[0..n) and nothing else, saved as above. */
TG_API int tg_checkpoint_save(tg_ctx *ctx, const char *path, tg_tensor *const *t, size_t n);

/* Reads a checkpoint of version 1 or 2 whole into a new state (*out; free
 * it with tg_state_free). Only a regular file is read (opened without
 * blocking; a FIFO, a device or a directory is TG_EIO naming what it is).
 * Everything is checked before it returns — magic, version, every size
 * against the bytes present (a file never makes it allocate more than a
 * small multiple of its size), names unique, CRC32 — and a file that fails
 * is TG_EFORMAT naming the file and what's wrong. 0 ok; -1 with *out NULL. */
TG_API int tg_checkpoint_read(tg_ctx *ctx, const char *path, tg_state **out);

enum {
	/* Load NaN and Inf values too (to look at a diverged model). */
	TG_CHECKPOINT_NONFINITE = 1,
	/* Every target must be in the state and every tensor of the state a
	 * target. */
	TG_CHECKPOINT_STRICT = 2,
};

/* Copies the state's tensors into t[0..n) (named, unique), matched by name.
 * With TG_CHECKPOINT_STRICT, a name in one but not the other is TG_EFORMAT
 * naming them all ("tensor fc1.W.m is in the file but not in the model");
 * without, those names are listed in report (size bytes, may be NULL; "" when
 * every name matched) in the same words, and the matched tensors load. A
 * matched tensor of another dtype or shape, or holding a NaN or an Inf
 * (unless TG_CHECKPOINT_NONFINITE), is TG_EFORMAT. Everything is checked
 * before a value is written: on error no tensor changes. Returns how many
 * tensors were loaded, or -1. */
TG_API int tg_state_load_into(const tg_state *s, tg_tensor *const *t, size_t n,
			      unsigned flags, char *report, size_t size);

/* Reads path and loads it strictly into t[0..n): the file's tensors and the
 * list must have the same names (metadata is ignored). On any error
 * (TG_EIO, TG_EFORMAT, TG_EARG) no tensor is changed. 0 ok, -1 on error. */
TG_API int tg_checkpoint_load(tg_ctx *ctx, const char *path, tg_tensor *const *t, size_t n);
/* tg_checkpoint_load with flags (0 or TG_CHECKPOINT_NONFINITE; it loads
 * strictly, so TG_CHECKPOINT_STRICT changes nothing). */
TG_API int tg_checkpoint_load_flags(tg_ctx *ctx, const char *path, tg_tensor *const *t,
				    size_t n, unsigned flags);

/* Writes t[0..n) as NumPy's .npz (a zip of "<name>.npy" members, stored
 * uncompressed; written atomically as a checkpoint is), which
 * numpy.load(path) reads without tapegrad: numpy.load(path)["fc1.W"] is an
 * array of t's dtype (float32, float64, int32, int64) and shape;
 * torch.from_numpy turns it into a tensor; a UTF-8 name beyond ASCII is
 * marked as UTF-8 in the zip, so it comes back as it is. A name that is not
 * UTF-8, or that would unpack outside the directory an extractor unpacks
 * into (a leading '/', a '..' step, a backslash), is TG_EARG. At most 65535
 * tensors and 4 GiB (no zip64). 0 ok, -1 on error. */
TG_API int tg_export_npz(tg_ctx *ctx, const char *path, tg_tensor *const *t, size_t n);

#ifdef __cplusplus
}
#endif
#endif /* TAPEGRAD_IO_H */
