// inspect.c - the graph of the tape as DOT, and the per-op profile (see inspect.h).
#include "inspect.h"

#include <stdlib.h>
#include <string.h>

static void shape_text(const Tensor *t, char *buf, size_t size) {
    int n = snprintf(buf, size, "(");
    for (int i = 0; i < t->ndim && n < (int)size; i++) n += snprintf(buf + n, size - (size_t)n, i ? ", %d" : "%d", t->shape[i]);
    if (n < (int)size) snprintf(buf + n, size - (size_t)n, ")");
}

// A DOT-safe copy of s (quotes and backslashes escaped)
static void dot_escape(const char *s, char *buf, size_t size) {
    size_t n = 0;
    for (; *s && n + 2 < size; s++) {
        if (*s == '"' || *s == '\\') buf[n++] = '\\';
        buf[n++] = *s;
    }
    buf[n] = '\0';
}

// The leaves seen so far (inputs that no node produced), so each is drawn once.
typedef struct { const Tensor **t; long n, cap; } LeafSet;

static bool leaf_seen(LeafSet *s, const Tensor *t) {
    for (long i = 0; i < s->n; i++) if (s->t[i] == t) return true;
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->t = realloc(s->t, (size_t)s->cap * sizeof *s->t);
        CHECK(s->t, "out of memory drawing the graph");
    }
    s->t[s->n++] = t;
    return false;
}

// 1234567 -> "1.23 M" (k, M, G, T)
static void si_text(double v, const char *unit, char *buf, size_t size) {
    const char *prefix[] = {"", "k", "M", "G", "T"};
    int p = 0;
    while (v >= 1000 && p < 4) { v /= 1000; p++; }
    snprintf(buf, size, "%.3g %s%s", v, prefix[p], unit);
}

static void write_node(FILE *f, const Node *n) {
    char shape[64], extra[96] = "", flops[32], bytes[32];
    shape_text(n->out, shape, sizeof shape);
    si_text(n->flops, "FLOP", flops, sizeof flops);
    si_text(n->bytes, "B", bytes, sizeof bytes);
    if (n->forward_s > 0 || n->backward_s > 0)
        snprintf(extra, sizeof extra, "\\nfwd %.3g ms, bwd %.3g ms", 1e3 * n->forward_s, 1e3 * n->backward_s);
    fprintf(f, "    n%ld [label=\"%s\\n%s\\n%s, %s%s\"];\n", n->index, n->op_name, shape, flops, bytes, extra);
}

static void write_leaf(FILE *f, const Tensor *t) {
    char shape[64], name[160];
    shape_text(t, shape, sizeof shape);
    dot_escape(t->name ? t->name : t->requires_grad ? "leaf" : "input", name, sizeof name);
    fprintf(f, "    t%p [label=\"%s\\n%s\", shape=ellipse, fillcolor=\"%s\"];\n", (const void *)t, name, shape,
            t->name ? "#d8e8ff" : "#fff2cc");
}

int graph_write_dot(FILE *f, const char *title) {
    long n = tape_node_count();
    char esc[256];
    dot_escape(title, esc, sizeof esc);
    fprintf(f, "digraph tape {\n  label=\"%s (%ld ops)\"; labelloc=t; rankdir=TB; newrank=true;\n"
               "  node [shape=box, style=filled, fillcolor=\"#eeeeee\", fontname=\"Helvetica\", fontsize=9];\n"
               "  edge [color=\"#666666\", arrowsize=0.5];\n", esc, n);
    // clusters: each scope's nodes, and the leaves first used there
    LeafSet leaves = {0};
    bool *done = calloc((size_t)(n ? n : 1), sizeof(bool));
    CHECK(done, "out of memory drawing the graph");
    for (long i = 0; i < n; i++) {
        if (done[i]) continue;
        const char *scope = tape_node(i)->scope;
        if (scope) {
            dot_escape(scope, esc, sizeof esc);
            fprintf(f, "  subgraph cluster_%ld {\n    label=\"%s\"; style=rounded; color=\"#999999\";\n", i, esc);
        }
        for (long j = i; j < n; j++) {
            const Node *m = tape_node(j);
            if (done[j] || (m->scope != scope && (!m->scope || !scope || strcmp(m->scope, scope)))) continue;
            done[j] = true;
            write_node(f, m);
            for (int k = 0; k < m->n_in; k++) {
                const Tensor *t = m->in[k];
                if (t && !t->node && !leaf_seen(&leaves, t)) write_leaf(f, t);
            }
        }
        if (scope) fprintf(f, "  }\n");
    }
    for (long i = 0; i < n; i++) {
        const Node *m = tape_node(i);
        for (int k = 0; k < m->n_in; k++) {
            const Tensor *t = m->in[k];
            if (!t) continue;
            if (t->node) fprintf(f, "  n%ld -> n%ld;\n", t->node->index, i);
            else fprintf(f, "  t%p -> n%ld;\n", (const void *)t, i);
        }
    }
    fprintf(f, "}\n");
    free(done);
    free(leaves.t);
    return fflush(f) || ferror(f) ? -1 : 0;
}

void profile_add_tape(Profile *p) {
    for (long i = 0; i < tape_node_count(); i++) {
        const Node *n = tape_node(i);
        int r = 0;
        while (r < p->n_rows && strcmp(p->rows[r].op, n->op_name)) r++;
        if (r == p->n_rows) {
            CHECK(p->n_rows < PROFILE_MAX_OPS, "more than %d kinds of op", PROFILE_MAX_OPS);
            memset(&p->rows[r], 0, sizeof p->rows[r]);
            snprintf(p->rows[r].op, sizeof p->rows[r].op, "%s", n->op_name);
            p->n_rows++;
        }
        ProfileRow *row = &p->rows[r];
        row->calls++;
        row->forward_s += n->forward_s;
        row->backward_s += n->backward_s;
        row->flops += n->flops;
        row->bytes += n->bytes;
    }
}

static int by_time(const void *a, const void *b) {
    const ProfileRow *x = a, *y = b;
    double tx = x->forward_s + x->backward_s, ty = y->forward_s + y->backward_s;
    return tx < ty ? 1 : tx > ty ? -1 : 0;
}

void profile_print(const Profile *p, FILE *f) {
    ProfileRow rows[PROFILE_MAX_OPS];
    memcpy(rows, p->rows, sizeof rows);
    qsort(rows, (size_t)p->n_rows, sizeof rows[0], by_time);
    double steps = p->steps > 0 ? (double)p->steps : 1, step_ms = 1e3 * p->step_s / steps, sum_ms = 0;
    fprintf(f, "profile over %ld steps (per step; GF/s = the forward's FLOPs over its time):\n", p->steps);
    fprintf(f, "| %-18s | %6s | %9s | %9s | %9s | %8s | %6s |\n", "op", "calls", "fwd ms", "bwd ms", "fwd GF/s",
            "MB", "share");
    fprintf(f, "|--------------------|--------|-----------|-----------|-----------|----------|--------|\n");
    for (int r = 0; r < p->n_rows; r++) {
        const ProfileRow *row = &rows[r];
        double fwd = 1e3 * row->forward_s / steps, bwd = 1e3 * row->backward_s / steps;
        sum_ms += fwd + bwd;
        fprintf(f, "| %-18s | %6.0f | %9.2f | %9.2f | %9.2f | %8.1f | %5.1f%% |\n", row->op, row->calls / steps, fwd,
                bwd, row->forward_s > 0 ? row->flops / row->forward_s / 1e9 : 0, row->bytes / steps / 1e6,
                100 * (fwd + bwd) / step_ms);
    }
    double opt_ms = 1e3 * p->optimizer_s / steps;
    fprintf(f, "| %-18s | %6d | %9.2f | %9s | %9s | %8s | %5.1f%% |\n", "(optimizer update)", 1, opt_ms, "-", "-", "-",
            100 * opt_ms / step_ms);
    sum_ms += opt_ms;
    fprintf(f, "ops + optimizer: %.1f ms per step; measured step: %.1f ms (%.1f%% of it in the table; the rest is data, "
               "gradient zeroing, logging and freeing the tape)\n", sum_ms, step_ms, 100 * sum_ms / step_ms);
}
