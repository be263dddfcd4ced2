/*
 * fuzz_jsonescape: buf_json_str, which writes every outside string (paths,
 * request IDs, client addresses, upstream IDs) into audit lines, problem
 * bodies and the service log. Checked against jansson and an independent
 * UTF-8 decoder: the output is always one valid JSON string, and it decodes
 * to the input with every byte that does not start a valid UTF-8 sequence
 * replaced by U+FFFD (so valid UTF-8 round-trips exactly). With too small a
 * cap it fails instead of overrunning.
 */
#include "buf.h"

#include "fuzz_util.h"

#include <jansson.h>

/* Length of the valid UTF-8 sequence at s (RFC 3629), or 0. */
static size_t ref_utf8(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4;
    else
        return 0;
    /* The second byte's range rules out overlongs, surrogates and > U+10FFFF. */
    if (c == 0xE0)
        lo = 0xA0;
    else if (c == 0xED)
        hi = 0x9F;
    else if (c == 0xF0)
        lo = 0x90;
    else if (c == 0xF4)
        hi = 0x8F;
    if (avail < n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct buf out, want, small;
    json_t *j;
    json_error_t je;
    size_t i = 0;
    int valid = 1;

    /* Worst case 6 output bytes per input byte ("\u001f", "\ufffd"), plus quotes. */
    buf_init(&out, 6 * size + 2);
    buf_init(&want, 3 * size + 1);
    FUZZ_CHECK(buf_json_str(&out, (const char *)data, size) == 0);
    FUZZ_CHECK(out.len >= 2 && out.p[0] == '"' && out.p[out.len - 1] == '"');
    for (size_t k = 0; k < out.len; k++)
        FUZZ_CHECK((unsigned char)out.p[k] >= 0x20 && out.p[k] != 0x7F);

    while (i < size) {
        size_t n = ref_utf8(data + i, size - i);
        FUZZ_CHECK(buf_utf8_len(data + i, size - i) == n);
        if (n == 0) {
            valid = 0;
            buf_add(&want, "\xEF\xBF\xBD", 3);
            n = 1;
        } else {
            buf_add(&want, data + i, n);
        }
        i += n;
    }
    j = json_loadb(out.p, out.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (j == NULL) {
        fprintf(stderr, "jansson refused the output: %s\n", je.text);
        abort();
    }
    FUZZ_CHECK(json_is_string(j));
    FUZZ_CHECK(json_string_length(j) == want.len && memcmp(json_string_value(j), want.p ? want.p : "", want.len) == 0);
    if (valid)
        FUZZ_CHECK(json_string_length(j) == size && memcmp(json_string_value(j), data, size) == 0);
    json_decref(j);

    /* A cap one byte short: a clean failure, all or nothing like every append. */
    buf_init(&small, out.len - 1);
    FUZZ_CHECK(buf_json_str(&small, (const char *)data, size) == -1);
    FUZZ_CHECK(small.len == 0);
    buf_free(&small);
    buf_free(&out);
    buf_free(&want);
    return 0;
}
