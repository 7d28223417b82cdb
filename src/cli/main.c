/* main.c - argv to work: subcommands, MPI start-up and the single place that reports an
 * error and chooses the exit code.
 *
 * Every rank parses the same argv and so reaches the same verdict on usage errors without
 * talking; everything after MPI start-up returns agreed statuses, so all ranks leave
 * through MPI_Finalize together. --help and --version never start MPI. */
#include "ringtrain/bench.h"
#include "ringtrain/ckpt.h"
#include "ringtrain/comm.h"
#include "ringtrain/config.h"
#include "ringtrain/dataset.h"
#include "ringtrain/log.h"
#include "ringtrain/model_file.h"
#include "ringtrain/signals.h"
#include "ringtrain/status.h"
#include "ringtrain/train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef RT_VERSION
#define RT_VERSION "unknown"
#endif

/* 75 is sysexits' EX_TEMPFAIL: "try again later" is exactly what a preempted job is. */
enum exit_code { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_STOPPED = 75 };

static const char usage_main[] =
    "usage: ringtrain <command> [args]\n"
    "\n"
    "commands:\n"
    "  train [JOB.ini] [section.key=value ...]   train a model (run under mpirun -np N)\n"
    "  eval MODEL.h5 DATA.h5 [--batch N]         loss and accuracy of a saved model\n"
    "  inspect CKPT.h5                           summary of a checkpoint, checksums verified\n"
    "  export [--sparse] IN.h5 OUT.h5            a checkpoint's or model's model as a model\n"
    "                                            file; --sparse stores weights as CSR\n"
    "  data import-idx IMAGES LABELS OUT.h5      convert MNIST/Fashion-MNIST IDX files\n"
    "  data import-text FILE OUT.h5 [--val F]    a text file's bytes as train/val splits\n"
    "  data synth OUT.h5 [--rows N] [--seed S] [--split train|test]\n"
    "                                            write the synthetic BigModel task\n"
    "  generate MODEL.h5 [--prompt TEXT] [--tokens N] [--temperature T] [--top-k K] [--seed S]\n"
    "                                            sample a continuation from a language model\n"
    "  bench allreduce [--csv] [options]         our allreduce against MPI_Allreduce\n"
    "  bench train JOB.ini [--steps N]           throughput, MFU, comm share, memory of a job\n"
    "\n"
    "  ringtrain <command> --help   help on one command\n"
    "  ringtrain --version\n";

static const char usage_train[] =
    "usage: mpirun -np N ringtrain train [JOB.ini] [section.key=value ...] [options]\n"
    "\n"
    "Trains the job's model data-parallel over N ranks. Without JOB.ini the built-in\n"
    "default job runs (Fashion-MNIST 784-512-256-10, see --print-config). Overrides are\n"
    "applied after the file, e.g. optim.lr=0.01 train.epochs=3.\n"
    "\n"
    "options:\n"
    "  --resume auto|PATH  continue from a checkpoint: auto takes the newest one in the\n"
    "                      checkpoint directory that reads back clean (none: start fresh)\n"
    "  --trace FILE     write a Chrome trace (Perfetto, chrome://tracing) of every rank:\n"
    "                   forward, backward per layer, each bucket's allreduce, optimizer, ...\n"
    "  --print-config   print the effective job as INI and exit\n"
    "  --help-keys      list every job key with its default and meaning\n"
    "\n"
    "SIGTERM, SIGINT or SIGUSR1 (to any rank, or SIGUSR1 to mpirun) stops every rank at the\n"
    "next step boundary; rank 0 writes a checkpoint and all ranks exit with code 75.\n"
    "\n"
    "Ends with one line on stdout:\n"
    "  final: epochs=E steps=S loss=L test_loss=L2 test_acc=A sparsity=S samples_per_s=R "
    "seconds=T\n";

static const char usage_eval[] =
    "usage: mpirun -np N ringtrain eval MODEL.h5 DATA.h5 [--batch N] [--threads N]\n"
    "\n"
    "Evaluates a model written by `train` on a dataset file, sharded across ranks with\n"
    "every sample counted once. Prints: eval: loss=L acc=A samples=N\n";

static const char usage_inspect[] =
    "usage: ringtrain inspect CKPT.h5\n"
    "\n"
    "Prints format, phase, step, epoch, architecture, parameter count, sparsity per layer,\n"
    "optimizer state and the metrics at save time, after reading every dataset back (so\n"
    "every Fletcher32 checksum is verified). Exit code 1 when the file is damaged.\n";

static const char usage_export[] =
    "usage: ringtrain export [--sparse] IN.h5 OUT.h5\n"
    "\n"
    "Writes the model of a checkpoint or model file IN as a model file OUT (atomically).\n"
    "--sparse stores each layer's weights in compressed sparse rows (indptr, indices, data:\n"
    "scipy.sparse.csr_matrix arrays), exact zeros dropped; `eval` runs such a file with the\n"
    "sparse kernel. Prints: wrote OUT: <storage>, N of M weights nonzero, B bytes\n";

static const char usage_data[] =
    "usage: ringtrain data import-idx IMAGES LABELS OUT.h5\n"
    "       ringtrain data import-text FILE OUT.h5 [--val FRACTION]\n"
    "       ringtrain data synth OUT.h5 [--rows N] [--seed S] [--split train|test]\n"
    "\n"
    "import-idx converts MNIST/Fashion-MNIST IDX files (gzip or plain) to a dataset file,\n"
    "pixels scaled to [0, 1]. import-text stores a text file's bytes (tokens 0..255) as a\n"
    "text-bytes file: the last FRACTION (default 0.1, at most 0.5) is /val, the rest /train;\n"
    "samples are then windows of model.context bytes. synth writes the rows of\n"
    "synth:bigmodel (defaults: 65536 rows, seed 1234, split train) so the in-memory task can\n"
    "be inspected or reused.\n";

static const char usage_generate[] =
    "usage: ringtrain generate MODEL.h5 [--prompt TEXT] [--tokens N] [--temperature T]\n"
    "                          [--top-k K] [--seed S]\n"
    "\n"
    "Prints TEXT (default: a newline) and N sampled bytes (default 256) from a language\n"
    "model (token ids into embed, e.g. scripts/jobs/kjv-gpt.ini's): logits / T (default 1;\n"
    "0 = always the most likely byte), the K most likely only (default 0 = all), seed S\n"
    "(default 1234). The same model, prompt and options print the same text anywhere.\n";

static const char usage_bench[] =
    "usage: mpirun -np N ringtrain bench allreduce [--csv] [--iters N] [--warmup N]\n"
    "                 [--min-bytes B] [--max-bytes B] [--algos ring,rd,auto,mpi] [--segment-kb K]\n"
    "\n"
    "Times ring, recursive doubling, auto and MPI_Allreduce side by side, 4 KiB to 64 MiB,\n"
    "verifying every result; prints size, count, time avg/min/max over ranks, algbw, busbw =\n"
    "algbw*2(N-1)/N and #wrong (nccl-tests columns). Exits non-zero on any wrong element.\n"
    "--csv prints algorithm,bytes,count,time_us,algbw_gbs,busbw_gbs,wrong.\n"
    "\n"
    "usage: mpirun -np N ringtrain bench train JOB.ini [section.key=value ...] [--steps N]\n"
    "\n"
    "Trains the job's first phase for N steps (default 100, after 10 of warm-up) without\n"
    "writing anything (no checkpoints, model, metrics) and prints per rank: samples/s, model\n"
    "GFLOP/s, the sgemm GFLOP/s of the same GEMMs in the same run, MFU, the step time split\n"
    "into compute / comm / wait, the communication share and the peak memory (max RSS).\n";

static int has_flag(int argc, char **argv, const char *flag)
{
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], flag) == 0) return 1;
    return 0;
}

static int usage_error(const char *fmt, const char *arg)
{
    if (rt_log_rank() == 0) {
        fprintf(stderr, "ringtrain: error: ");
        fprintf(stderr, fmt, arg);
        fprintf(stderr, " (see ringtrain --help)\n");
    }
    return EXIT_USAGE;
}

/* The one place an agreed failure is reported: rank 0 prints the first failing rank's
 * message; every rank returns the same code. */
static int report(int st)
{
    if (st == RT_OK) return EXIT_OK;
    if (rt_log_rank() == 0) {
        fflush(stdout);
        fprintf(stderr, "ringtrain: error: %s\n", rt_error_message(st));
        fflush(stderr);
    }
    return st == RT_ERR_INVAL ? EXIT_USAGE : EXIT_FAILED;
}

/* Builds the job from defaults, the optional file and the overrides. Not collective: every
 * rank reads the same file and reaches the same verdict, agreed by the caller anyway. */
static int load_job(struct rt_config *c, int argc, char **argv)
{
    rt_config_defaults(c);
    int first = 0;
    if (argc > 0 && argv[0][0] != '-' && !strchr(argv[0], '=')) {
        RT_TRY(rt_config_load(c, argv[0]));
        first = 1;
    }
    for (int i = first; i < argc; i++) {
        if (strcmp(argv[i], "--print-config") == 0) continue;
        if (strcmp(argv[i], "--resume") == 0) {
            if (i + 1 >= argc || argv[i + 1][0] == '\0' || argv[i + 1][0] == '-')
                return rt_errorf(RT_ERR_INVAL, "train: --resume needs auto or a checkpoint path");
            i++;
            continue;
        }
        if (strcmp(argv[i], "--trace") == 0) {
            if (i + 1 >= argc || argv[i + 1][0] == '\0' || argv[i + 1][0] == '-')
                return rt_errorf(RT_ERR_INVAL, "train: --trace needs a file name (trace.json)");
            i++;
            continue;
        }
        if (argv[i][0] == '-')
            return rt_errorf(RT_ERR_INVAL, "train: unknown option '%s'", argv[i]);
        RT_TRY(rt_config_override(c, argv[i]));
    }
    return rt_config_validate(c);
}

/* The value after `name`, or NULL. */
static const char *option_str(int argc, char **argv, const char *name)
{
    for (int i = 0; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0) return argv[i + 1];
    return NULL;
}

static void print_final(const struct rt_train_result *r)
{
    char epochs[32];
    if (r->epochs == (double)(int64_t)r->epochs)
        snprintf(epochs, sizeof epochs, "%lld", (long long)r->epochs);
    else
        snprintf(epochs, sizeof epochs, "%.3f", r->epochs);
    char test[96] = "";
    if (r->has_test && r->test_acc >= 0)
        snprintf(test, sizeof test, " test_loss=%.6f test_acc=%.4f", r->test_loss, r->test_acc);
    else if (r->has_test)
        snprintf(test, sizeof test, " test_loss=%.6f", r->test_loss);
    char skipped[48] = "";
    if (r->skipped > 0) snprintf(skipped, sizeof skipped, " skipped=%lld", (long long)r->skipped);
    rt_log0("final: epochs=%s steps=%lld loss=%.6f%s sparsity=%.4f samples_per_s=%.1f "
            "seconds=%.2f%s\n",
            epochs, (long long)r->steps, r->loss, test, r->sparsity, r->samples_per_s, r->seconds,
            skipped);
}

static int cmd_train(rt_comm_t *comm, int argc, char **argv)
{
    static struct rt_config cfg; /* large (paths); static keeps it off the stack */
    int st = rt_comm_agree(comm, load_job(&cfg, argc, argv));
    if (st != RT_OK) return report(st);
    if (has_flag(argc, argv, "--print-config")) {
        static char text[16384];
        rt_config_format(&cfg, text, sizeof text);
        rt_log0("%s", text);
        /* rank 0 alone reads the data's dimensions; the verdict is agreed */
        st = rt_comm_rank(comm) == 0 ? rt_train_describe(&cfg, stdout) : RT_OK;
        fflush(stdout);
        st = rt_comm_agree(comm, st);
        return st == RT_OK ? EXIT_OK : report(st);
    }
    struct rt_train_opts opts = {.resume = option_str(argc, argv, "--resume"),
                                 .trace = option_str(argc, argv, "--trace")};
    static struct rt_train_result r;
    st = rt_train_run(&cfg, comm, &opts, &r);
    rt_signals_restore();
    if (st == RT_OK) print_final(&r);
    if (st == RT_STOPPED) {
        rt_log0("stopped: %s at step %lld; checkpoint %s; continue with --resume auto\n",
                rt_signal_name(r.stop_signal), (long long)r.steps, r.checkpoint);
        return EXIT_STOPPED;
    }
    return report(st);
}

/* Parses "--name VALUE" as a positive integer; returns -1 on a bad value. */
static long long option_int(int argc, char **argv, const char *name, long long def)
{
    for (int i = 0; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0) {
            char *end;
            long long v = strtoll(argv[i + 1], &end, 10);
            return *end || end == argv[i + 1] || v < 0 ? -1 : v;
        }
    return def;
}

static int cmd_eval(rt_comm_t *comm, int argc, char **argv)
{
    if (argc < 2 || argv[0][0] == '-' || argv[1][0] == '-')
        return usage_error("eval: expected MODEL.h5 DATA.h5, got %s", argc ? argv[0] : "nothing");
    long long batch = option_int(argc, argv, "--batch", 1024);
    long long threads = option_int(argc, argv, "--threads", 0);
    if (batch < 1 || threads < 0)
        return usage_error("eval: %s: expected a positive whole number", "--batch/--threads");
    struct rt_eval_result r;
    int st = rt_eval_run(comm, argv[0], argv[1], batch, 2048, (int)threads, &r);
    if (st == RT_OK) {
        char acc[32] = "", csr[640] = "";
        if (r.acc >= 0) snprintf(acc, sizeof acc, " acc=%.4f", r.acc);
        if (r.csr)
            snprintf(csr, sizeof csr, " storage=csr nonzeros=%lld/%lld kernels=%s",
                     (long long)r.nonzeros, (long long)r.weights, r.kernels);
        rt_log0("eval: loss=%.6f%s samples=%lld%s\n", r.loss, acc, (long long)r.samples, csr);
    }
    return report(st);
}

/* Conversions are single-process work: rank 0 does it, everyone agrees on the outcome. */
static int cmd_data(rt_comm_t *comm, int argc, char **argv)
{
    int rank0 = rt_comm_rank(comm) == 0, st = RT_OK;
    const char *out = NULL;
    if (argc >= 1 && strcmp(argv[0], "import-idx") == 0) {
        if (argc != 4) return usage_error("data import-idx: expected IMAGES LABELS OUT.h5%s", "");
        if (rank0) st = rt_idx_import(argv[1], argv[2], argv[3]);
        out = argv[3];
    } else if (argc >= 1 && strcmp(argv[0], "import-text") == 0) {
        if (argc < 3 || argv[1][0] == '-' || argv[2][0] == '-')
            return usage_error("data import-text: expected FILE OUT.h5 [--val FRACTION]%s", "");
        double val = 0.1;
        for (int i = 3; i < argc; i++) {
            char *end = NULL;
            if (strcmp(argv[i], "--val") != 0 || i + 1 >= argc)
                return usage_error("data import-text: unexpected '%s'", argv[i]);
            val = strtod(argv[++i], &end);
            if (end == argv[i] || *end)
                return usage_error("data import-text: --val %s: expected a fraction from 0 to 0.5",
                                   argv[i]);
        }
        if (rank0) st = rt_text_import(argv[1], argv[2], val);
        out = argv[2];
    } else if (argc >= 1 && strcmp(argv[0], "synth") == 0) {
        if (argc < 2 || argv[1][0] == '-') return usage_error("data synth: expected OUT.h5%s", "");
        long long rows = option_int(argc, argv, "--rows", 65536);
        long long seed = option_int(argc, argv, "--seed", 1234);
        const char *split = "train";
        for (int i = 2; i + 1 < argc; i++)
            if (strcmp(argv[i], "--split") == 0) split = argv[i + 1];
        if (rows < 1 || seed < 0)
            return usage_error("data synth: %s: expected a positive whole number", "--rows/--seed");
        if (strcmp(split, "train") != 0 && strcmp(split, "test") != 0)
            return usage_error("data synth: --split %s: expected train or test", split);
        if (rank0)
            st = rt_synth_write(argv[1], "bigmodel", rows, (uint64_t)seed,
                                strcmp(split, "test") == 0);
        out = argv[1];
    } else {
        return usage_error("data: unknown subcommand '%s': expected import-idx, import-text or "
                           "synth",
                           argc ? argv[0] : "");
    }
    st = rt_comm_agree(comm, st);
    if (st == RT_OK && rank0) rt_log0("wrote %s\n", out);
    return report(st);
}

/* Rank 0 converts; everyone agrees on the outcome. */
static int export_model(const char *in, const char *out, int sparse)
{
    struct rt_model_spec spec;
    struct rt_model m;
    memset(&m, 0, sizeof m);
    int st = rt_model_file_spec(in, &spec);
    if (st == RT_OK) st = rt_model_init(&m, &spec, 1);
    if (st == RT_OK) st = rt_model_file_load(in, &m);
    char *config = NULL;
    if (st == RT_OK && rt_ckpt_read_config(in, &config) != RT_OK) rt_error_clear();
    if (st == RT_OK)
        st = sparse ? rt_model_save_csr(out, &m, config) : rt_model_save(out, &m, config);
    if (st == RT_OK) {
        FILE *f = fopen(out, "rb");
        long bytes = f && fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
        if (f) fclose(f);
        rt_log0("wrote %s: %s, %lld of %lld weights nonzero, %ld bytes\n", out,
                sparse ? "csr" : "dense", (long long)rt_model_weight_nonzeros(&m),
                (long long)rt_model_weight_count(&m), bytes);
    }
    free(config);
    rt_model_free(&m);
    return st;
}

static int cmd_export(rt_comm_t *comm, int argc, char **argv)
{
    int sparse = argc > 0 && strcmp(argv[0], "--sparse") == 0;
    if (argc - sparse != 2 || argv[sparse][0] == '-' || argv[sparse + 1][0] == '-')
        return usage_error("export: expected [--sparse] IN.h5 OUT.h5%s", "");
    int st = rt_comm_rank(comm) == 0 ? export_model(argv[sparse], argv[sparse + 1], sparse) : RT_OK;
    return report(rt_comm_agree(comm, st));
}

/* Reading is single-process work: rank 0 reads and prints, everyone agrees. */
static int cmd_inspect(rt_comm_t *comm, int argc, char **argv)
{
    if (argc != 1 || argv[0][0] == '-')
        return usage_error("inspect: expected one checkpoint file%s", "");
    int st = rt_comm_rank(comm) == 0 ? rt_ckpt_inspect(argv[0], stdout) : RT_OK;
    fflush(stdout);
    return report(rt_comm_agree(comm, st));
}

static int cmd_bench(rt_comm_t *comm, int argc, char **argv)
{
    if (argc >= 1 && strcmp(argv[0], "train") == 0)
        return rt_cli_bench_train(comm, argc - 1, argv + 1);
    if (argc < 1 || strcmp(argv[0], "allreduce") != 0)
        return usage_error("bench: unknown benchmark '%s': expected allreduce or train",
                           argc ? argv[0] : "");
    return rt_cli_bench_allreduce(comm, argc, argv);
}

static const char *command_help(const char *cmd)
{
    if (strcmp(cmd, "train") == 0) return usage_train;
    if (strcmp(cmd, "eval") == 0) return usage_eval;
    if (strcmp(cmd, "data") == 0) return usage_data;
    if (strcmp(cmd, "inspect") == 0) return usage_inspect;
    if (strcmp(cmd, "export") == 0) return usage_export;
    if (strcmp(cmd, "bench") == 0) return usage_bench;
    if (strcmp(cmd, "generate") == 0) return usage_generate;
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(usage_main, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("ringtrain %s\n", RT_VERSION);
        return EXIT_OK;
    }
    const char *help = command_help(argv[1]);
    if (!help) {
        fprintf(stderr, "ringtrain: error: unknown command '%s' (see ringtrain --help)\n", argv[1]);
        return EXIT_USAGE;
    }
    if (has_flag(argc, argv, "--help") || has_flag(argc, argv, "-h")) {
        fputs(help, stdout);
        return EXIT_OK;
    }
    if (strcmp(argv[1], "train") == 0 && has_flag(argc, argv, "--help-keys")) {
        rt_config_print_keys(stdout);
        return EXIT_OK;
    }
    /* Before MPI start-up and data loading: a stop signal in the first second of a job
     * (a requeued Slurm job can get one) must checkpoint, not kill. */
    int signals_ok = strcmp(argv[1], "train") != 0 || rt_signals_install() == 0;
    rt_comm_t *comm;
    rt_comm_init(&comm, &argc, &argv);
    rt_log_set_rank(rt_comm_rank(comm), rt_comm_size(comm));
    if (!signals_ok) rt_warn("cannot install signal handlers: a stop signal will kill\n");
    int code;
    if (strcmp(argv[1], "train") == 0)
        code = cmd_train(comm, argc - 2, argv + 2);
    else if (strcmp(argv[1], "eval") == 0)
        code = cmd_eval(comm, argc - 2, argv + 2);
    else if (strcmp(argv[1], "bench") == 0)
        code = cmd_bench(comm, argc - 2, argv + 2);
    else if (strcmp(argv[1], "inspect") == 0)
        code = cmd_inspect(comm, argc - 2, argv + 2);
    else if (strcmp(argv[1], "export") == 0)
        code = cmd_export(comm, argc - 2, argv + 2);
    else if (strcmp(argv[1], "generate") == 0)
        code = report(rt_cli_generate(comm, argc - 2, argv + 2));
    else
        code = cmd_data(comm, argc - 2, argv + 2);
    rt_comm_finalize(comm);
    return code;
}
