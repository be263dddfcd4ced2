/*
 * audit_cli: smc-gateway-audit, the auditor's tool for the gateway's audit
 * log. "verify" proves the hash chain and the signed checkpoints over a set
 * of files (oldest first) and names the first broken line; "query" lists
 * entries matching filters as a table or as JSON Lines. Everything read from
 * the log is escaped before it reaches the terminal, because the log holds
 * text chosen by callers (subjects, paths, request IDs).
 */
#include "buf.h"
#include "chain.h"
#include "clock.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXIT_BROKEN 1
#define EXIT_USAGE 2
#define ROW_MAX (8 * 1024 * 1024) /* one table row: a 1 MiB line, escaped */

static const char *prog = "smc-gateway-audit";

static void usage(FILE *f)
{
    fprintf(f, "usage: smc-gateway-audit verify [--pubkey FILE]... AUDITFILE...\n"
               "       smc-gateway-audit query [FILTER]... [--json] AUDITFILE...\n"
               "       smc-gateway-audit --version | --help\n"
               "\n"
               "Give the files oldest first (rotated files, then the current one).\n"
               "\n"
               "verify  check the hash chain within and across the files and every checkpoint;\n"
               "        prints \"OK ...\" and exits 0, or prints the first broken line as\n"
               "        FILE:LINE: why and exits 1. Warnings name entries no signature seals.\n"
               "  --pubkey FILE   Ed25519 public key PEM (or private key PEM) the checkpoints are\n"
               "                  signed with; repeat it for keys used in turn. Without it,\n"
               "                  signatures are not checked.\n"
               "\n"
               "query   list matching entries (it does not verify: run verify for that).\n"
               "  --team T  --sub S  --job J  --decision allow|deny  --result R  --event E\n"
               "                  exact matches on team, sub, job_id, decision, result, event\n"
               "  --since TIME    entries at or after TIME (RFC 3339)\n"
               "  --until TIME    entries before TIME (RFC 3339)\n"
               "  --json          one JSON object per line (ASCII only) instead of a table\n"
               "\n"
               "Exit status: 0 success, 1 broken chain or unreadable input, 2 usage error.\n");
}

/* Reads one file line by line; each line capped just above CHAIN_LINE_MAX. */
struct reader {
    FILE *f;
    struct buf line; /* the current line, newline included when it has one */
    unsigned long lineno;
    int too_long; /* the line was cut at the cap (the rest skipped) */
};

static int reader_open(struct reader *r, const char *path)
{
    memset(r, 0, sizeof(*r));
    buf_init(&r->line, CHAIN_LINE_MAX + 1);
    r->f = fopen(path, "rb");
    if (r->f == NULL) {
        fprintf(stderr, "%s: %s: cannot open: %s\n", prog, path, strerror(errno));
        return -1;
    }
    return 0;
}

static void reader_close(struct reader *r)
{
    if (r->f != NULL)
        fclose(r->f);
    r->f = NULL;
    buf_free(&r->line);
}

/* 1: a line (and *last says whether it is the file's last), 0: end of file, -1: read error. */
static int reader_next(struct reader *r, const char *path, int *last)
{
    int rc = -1, c = EOF;

    buf_reset(&r->line);
    r->too_long = 0;
    while ((c = getc_unlocked(r->f)) != EOF) {
        /* Past the cap the verifier sees CHAIN_LINE_MAX + 1 bytes and refuses them. */
        if (!r->too_long && buf_addc(&r->line, (char)c) != 0)
            r->too_long = 1;
        if (c == '\n')
            break;
    }
    if (ferror(r->f))
        goto fail;
    if (c == EOF && r->line.len == 0 && !r->too_long) {
        rc = 0;
        goto out;
    }
    r->lineno++;
    c = getc_unlocked(r->f);
    *last = c == EOF;
    if (c != EOF)
        ungetc(c, r->f);
    if (ferror(r->f))
        goto fail;
    rc = 1;
    goto out;
fail:
    fprintf(stderr, "%s: %s: read error: %s\n", prog, path, strerror(errno));
out:
    return rc;
}

/* ---- verify ---- */

static void print_verdict(const struct chain_result *res, char **files, int nfiles, const int *empty)
{
    uint64_t from;

    printf("OK %" PRIu64 " entries", res->entries);
    if (!res->from_start)
        printf(" (seq %" PRIu64 "..%" PRIu64 ")", res->first_seq, res->last_seq);
    if (res->sigs_checked)
        printf(", sealed through seq %" PRIu64, res->sealed_seq);
    else
        printf(", signatures not checked");
    if (!res->from_start)
        printf("; history before seq %" PRIu64 " is not present", res->first_seq);
    printf("\n");
    if (!res->sigs_checked) {
        printf("WARNING: no --pubkey given: checkpoint signatures were not checked (%" PRIu64 " checkpoint%s in the "
               "log), so no entry is proven sealed\n",
               res->checkpoints, res->checkpoints == 1 ? "" : "s");
    } else if (res->sealed_seq < res->last_seq) {
        from = res->sealed_seq > 0 ? res->sealed_seq + 1 : res->first_seq;
        if (res->sealed_seq == 0)
            printf("WARNING: entries seq %" PRIu64 "..%" PRIu64
                   " are not sealed by a signature: there is no checkpoint\n",
                   from, res->last_seq);
        else if (from == res->last_seq)
            printf("WARNING: entry seq %" PRIu64 " after the last checkpoint is not sealed by a signature\n", from);
        else
            printf("WARNING: entries seq %" PRIu64 "..%" PRIu64
                   " after the last checkpoint are not sealed by a signature\n",
                   from, res->last_seq);
    }
    for (int i = 0; i < nfiles; i++)
        if (empty[i])
            printf("WARNING: %s is empty\n", files[i]);
}

static int cmd_verify(int argc, char **argv)
{
    static const struct option opts[] = {
        {"pubkey", required_argument, NULL, 'k'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int rc = EXIT_USAGE, opt, nfiles, broken = 0, *empty = NULL;
    char **files;
    struct chain_verifier *v = NULL;
    struct chain_result res;
    struct buf err;

    buf_init(&err, 16 * 1024);
    v = chain_verifier_new(NULL);
    if (v == NULL) {
        rc = EXIT_BROKEN;
        goto out;
    }
    while ((opt = getopt_long(argc, argv, "k:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'k': {
            EVP_PKEY *pub = chain_load_public_key(optarg, &err);
            int added = pub != NULL && chain_verifier_add_key(v, pub) == 0;
            EVP_PKEY_free(pub);
            if (pub != NULL && !added)
                buf_printf(&err, "%s: too many public keys (at most %d)\n", optarg, CHAIN_KEYS_MAX);
            if (!added) {
                fprintf(stderr, "%s: %s", prog, err.p ? err.p : "cannot load the public key\n");
                goto out;
            }
            break;
        }
        case 'h':
            usage(stdout);
            rc = 0;
            goto out;
        default:
            usage(stderr);
            goto out;
        }
    }
    files = argv + optind;
    nfiles = argc - optind;
    if (nfiles < 1) {
        fprintf(stderr, "%s: verify: no audit files given\n", prog);
        usage(stderr);
        goto out;
    }
    rc = EXIT_BROKEN;
    empty = calloc((size_t)nfiles, sizeof(*empty));
    if (empty == NULL)
        goto out;
    for (int i = 0; i < nfiles && !broken; i++) {
        struct reader r;
        int got, last = 0;
        if (reader_open(&r, files[i]) != 0)
            goto out;
        while ((got = reader_next(&r, files[i], &last)) == 1) {
            if (chain_verifier_feed(v, files[i], r.lineno, r.line.p, r.line.len, last) != 0) {
                broken = 1;
                break;
            }
        }
        empty[i] = r.lineno == 0;
        reader_close(&r);
        if (got < 0)
            goto out;
    }
    if (chain_verifier_finish(v, &res) != 0) {
        printf("%s\n", res.error);
        goto out;
    }
    if (res.entries == 0) {
        if (nfiles == 1)
            printf("%s is empty: no entries to verify\n", files[0]);
        else
            printf("no entries to verify: all %d files are empty\n", nfiles);
        goto out;
    }
    print_verdict(&res, files, nfiles, empty);
    rc = 0;
out:
    free(empty);
    chain_verifier_free(v);
    buf_free(&err);
    return rc;
}

/* ---- query ---- */

struct query {
    struct chain_filter f;
    int json;
};

/* A cell's text: strings escaped, other values as JSON; "-" when absent. */
static int value_text(struct buf *out, json_t *j)
{
    int rc = -1;
    char *s = NULL;

    if (j == NULL || json_is_null(j)) {
        rc = buf_adds(out, "-");
    } else if (json_is_string(j)) {
        rc = json_string_length(j) == 0 ? buf_adds(out, "\"\"")
                                        : buf_term_str(out, json_string_value(j), json_string_length(j));
    } else {
        s = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_ENCODE_ANY);
        rc = s == NULL ? -1 : buf_term_str(out, s, strlen(s));
    }
    free(s);
    return rc;
}

/* Characters a terminal shows for s (UTF-8 continuation bytes add none). */
static size_t display_width(const char *s, size_t len)
{
    size_t w = 0;

    for (size_t i = 0; i < len; i++)
        w += ((unsigned char)s[i] & 0xC0) != 0x80;
    return w;
}

static int pad_cell(struct buf *row, size_t start, int width, int last)
{
    size_t w = display_width(row->p + start, row->len - start);

    if (last)
        return 0;
    while (w < (size_t)width) {
        if (buf_addc(row, ' ') != 0)
            return -1;
        w++;
    }
    return buf_add(row, "  ", 2);
}

struct column {
    const char *title;
    const char *key; /* NULL: the detail column */
    int width;
};

static const struct column columns[] = {
    {"TS", "ts", 24},         {"EVENT", "event", 10},   {"DECISION", "decision", 8},
    {"STATUS", "status", 6},  {"RESULT", "result", 8},  {"TEAM", "team", 12},
    {"SUB", "sub", 24},       {"JOB_ID", "job_id", 20}, {"REQUEST_ID", "request_id", 26},
    {"REASON/CODE", NULL, 0},
};
#define NCOLUMNS (sizeof(columns) / sizeof(columns[0]))

/* The last column: why it was refused or what the upstream said; a count for summaries. */
static int detail_text(struct buf *out, json_t *e)
{
    static const char *const keys[] = {"reason", "upstream_code", "gateway_error"};
    json_t *j;

    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if ((j = json_object_get(e, keys[i])) != NULL && !json_is_null(j))
            return value_text(out, j);
    if ((j = json_object_get(e, "count")) != NULL) {
        if (buf_adds(out, "count=") != 0 || value_text(out, j) != 0)
            return -1;
        if ((j = json_object_get(e, "client_ip")) != NULL)
            return buf_adds(out, " client_ip=") == 0 ? value_text(out, j) : -1;
        return 0;
    }
    return buf_adds(out, "-");
}

static int print_row(struct buf *row, json_t *e)
{
    int rc = -1;

    buf_reset(row);
    for (size_t c = 0; c < NCOLUMNS; c++) {
        size_t start = row->len;
        int r;
        if (e == NULL)
            r = buf_adds(row, columns[c].title);
        else if (columns[c].key == NULL)
            r = detail_text(row, e);
        else
            r = value_text(row, json_object_get(e, columns[c].key));
        if (r != 0 || pad_cell(row, start, columns[c].width, c + 1 == NCOLUMNS) != 0)
            goto out;
    }
    if (buf_addc(row, '\n') != 0)
        goto out;
    fwrite(row->p, 1, row->len, stdout);
    rc = 0;
out:
    if (rc != 0)
        printf("(entry too large to show)\n");
    return rc;
}

/* JSON Lines, ASCII only; DEL (which jansson leaves raw) is escaped too. */
static int print_json(json_t *e)
{
    int rc = -1;
    char *s = json_dumps(e, JSON_COMPACT | JSON_ENSURE_ASCII);

    if (s == NULL)
        goto out;
    for (const char *p = s; *p != '\0'; p++) {
        if (*p == 0x7F)
            fputs("\\u007f", stdout);
        else
            putchar(*p);
    }
    putchar('\n');
    rc = 0;
out:
    free(s);
    return rc;
}

static int set_once(const char **slot, const char *value, const char *name)
{
    if (*slot != NULL) {
        fprintf(stderr, "%s: query: --%s given twice\n", prog, name);
        return -1;
    }
    *slot = value;
    return 0;
}

static int set_time(int *has, int64_t *ms, const char *value, const char *name)
{
    if (*has) {
        fprintf(stderr, "%s: query: --%s given twice\n", prog, name);
        return -1;
    }
    if (clock_parse_rfc3339(value, ms) != 0) {
        fprintf(stderr, "%s: query: --%s: not an RFC 3339 time (e.g. 2026-11-28T12:00:00Z): %s\n", prog, name, value);
        return -1;
    }
    *has = 1;
    return 0;
}

static int query_file(const struct query *q, const char *path, struct buf *row, int *bad)
{
    int rc = -1, got, last;
    struct reader r;
    json_error_t je;

    if (reader_open(&r, path) != 0)
        goto out;
    while ((got = reader_next(&r, path, &last)) == 1) {
        size_t len = r.line.len;
        json_t *e;
        if (r.too_long) {
            fprintf(stderr, "%s: %s:%lu: skipped: longer than %d bytes\n", prog, path, r.lineno, CHAIN_LINE_MAX);
            *bad = 1;
            continue;
        }
        if (len > 0 && r.line.p[len - 1] == '\n')
            len--;
        /* je.text may quote the line: only the position is reported. */
        e = json_loadb(r.line.p ? r.line.p : "", len, JSON_REJECT_DUPLICATES, &je);
        if (!json_is_object(e)) {
            fprintf(stderr, "%s: %s:%lu: skipped: not a JSON object\n", prog, path, r.lineno);
            *bad = 1;
        } else if (chain_filter_match(&q->f, e)) {
            if (q->json)
                print_json(e);
            else
                print_row(row, e);
        }
        json_decref(e);
    }
    if (got == 0)
        rc = 0;
out:
    reader_close(&r);
    return rc;
}

static int cmd_query(int argc, char **argv)
{
    static const struct option opts[] = {{"team", required_argument, NULL, 't'},
                                         {"sub", required_argument, NULL, 's'},
                                         {"job", required_argument, NULL, 'j'},
                                         {"decision", required_argument, NULL, 'd'},
                                         {"result", required_argument, NULL, 'r'},
                                         {"event", required_argument, NULL, 'e'},
                                         {"since", required_argument, NULL, 'S'},
                                         {"until", required_argument, NULL, 'U'},
                                         {"json", no_argument, NULL, 'J'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int rc = EXIT_USAGE, opt, bad = 0, r = 0;
    struct query q;
    struct buf row;

    memset(&q, 0, sizeof(q));
    buf_init(&row, ROW_MAX);
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 't':
            r = set_once(&q.f.team, optarg, "team");
            break;
        case 's':
            r = set_once(&q.f.sub, optarg, "sub");
            break;
        case 'j':
            r = set_once(&q.f.job, optarg, "job");
            break;
        case 'd':
            r = set_once(&q.f.decision, optarg, "decision");
            break;
        case 'r':
            r = set_once(&q.f.result, optarg, "result");
            break;
        case 'e':
            r = set_once(&q.f.event, optarg, "event");
            break;
        case 'S':
            r = set_time(&q.f.has_since, &q.f.since_ms, optarg, "since");
            break;
        case 'U':
            r = set_time(&q.f.has_until, &q.f.until_ms, optarg, "until");
            break;
        case 'J':
            q.json = 1;
            break;
        case 'h':
            usage(stdout);
            rc = 0;
            goto out;
        default:
            usage(stderr);
            goto out;
        }
        if (r != 0)
            goto out;
    }
    if (q.f.decision != NULL && strcmp(q.f.decision, "allow") != 0 && strcmp(q.f.decision, "deny") != 0) {
        fprintf(stderr, "%s: query: --decision must be allow or deny\n", prog);
        goto out;
    }
    if (optind >= argc) {
        fprintf(stderr, "%s: query: no audit files given\n", prog);
        usage(stderr);
        goto out;
    }
    rc = 0;
    if (!q.json)
        print_row(&row, NULL);
    for (int i = optind; i < argc; i++)
        if (query_file(&q, argv[i], &row, &bad) != 0)
            rc = EXIT_BROKEN;
    if (bad)
        rc = EXIT_BROKEN;
out:
    buf_free(&row);
    return rc;
}

int main(int argc, char **argv)
{
    int rc = EXIT_USAGE;

    if (argc < 2) {
        usage(stderr);
    } else if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        rc = 0;
    } else if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
        printf("smc-gateway-audit %s (%s)\n", GW_VERSION, CHAIN_FORMAT);
        rc = 0;
    } else if (strcmp(argv[1], "verify") == 0) {
        rc = cmd_verify(argc - 1, argv + 1);
    } else if (strcmp(argv[1], "query") == 0) {
        rc = cmd_query(argc - 1, argv + 1);
    } else {
        fprintf(stderr, "%s: unknown command: %s\n", prog, argv[1]);
        usage(stderr);
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "%s: writing the output failed: %s\n", prog, strerror(errno));
        rc = EXIT_BROKEN;
    }
    return rc;
}
