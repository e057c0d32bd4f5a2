// loader.c - worker threads fill a ring of batches ahead of the training step.
//
// A run starts at (epoch, position) (loader_new: (0, 0); loader_seek: anywhere) and numbers its batches k = 0, 1, ...
// Batch k's content depends only on (seed, k's epoch and position), never on which worker made it, so any number
// of workers gives bit-identical batches:
//   TRAIN_PAIRS: epoch order = Fisher-Yates permutation seeded by hash(seed, epoch), drop_last; row r of the batch at
//                position p is augment_pair(perm[p + r], hash(seed, epoch, p + r)).
//   TEST:        dataset order from the start position, transform_test, the last partial batch kept.
// Ring: batch k lives in slot k % n_slots. Workers claim batches in order, but only while the slot is free: the
// consumer holds the batch it was last given until its next loader_next call.
//
// Legend: B batch rows, C channels, S input size, N dataset size.
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "augment.h"

struct Loader {
    const Dataset *ds;
    LoaderMode mode;
    int batch, n_workers, n_slots;
    uint64_t seed;
    long image_floats;          // C * S * S
    long batches_per_epoch;     // TRAIN: N / B (drop_last); TEST: ceil(N / B)
    long start_epoch, start_position, n_batches;   // this run: its origin and length (TRAIN: endless)
    int shard_first, shard_rows;                   // TRAIN: the rows of each batch this process takes
    Batch *slots;               // (n_slots)
    long *slot_batch;           // run batch index each slot holds when ready, -1 when none
    long next_claim, next_consume, held;           // held: batch the consumer still reads, -1 when none
    bool stop;
    pthread_mutex_t mu;
    pthread_cond_t work_cv, ready_cv;              // work_cv: a slot was freed; ready_cv: a batch was finished
    pthread_t *threads;
    double wait_seconds;
};

// The order of one training epoch: perm (N), a Fisher-Yates shuffle seeded by (seed, epoch).
static void epoch_permutation(int *perm, int n, uint64_t seed, long epoch) {
    for (int i = 0; i < n; i++) perm[i] = i;
    Rng rng;
    rng_seed(&rng, rng_hash2(seed, (uint64_t)epoch));
    for (int i = n - 1; i > 0; i--) {
        int j = rng_int(&rng, i + 1);
        int t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

// Fills batch b with run batch k. perm / perm_epoch: the worker's cached epoch order (TRAIN only).
static void fill_batch(Loader *ld, long k, Batch *b, int *perm, long *perm_epoch) {
    const Dataset *ds = ld->ds;
    long f = ld->image_floats;
    if (ld->mode == LOADER_TRAIN_PAIRS) {
        long g = ld->start_position / ld->batch + k;   // batch index counted from the start of start_epoch
        b->epoch = ld->start_epoch + g / ld->batches_per_epoch;
        b->position = (g % ld->batches_per_epoch) * ld->batch;
        b->batch = ld->shard_rows;
        if (*perm_epoch != b->epoch) {
            epoch_permutation(perm, ds->n, ld->seed, b->epoch);
            *perm_epoch = b->epoch;
        }
        for (int r = 0; r < b->batch; r++) {
            long row = b->position + ld->shard_first + r;   // the row of the whole batch
            int idx = perm[row];
            uint64_t row_seed = rng_hash3(ld->seed, (uint64_t)b->epoch, (uint64_t)row);
            augment_pair(ds, idx, row_seed, b->x1 + r * f, b->x2 + r * f);
            b->indices[r] = idx;
            b->labels[r] = ds->labels[idx];
        }
    } else {
        b->epoch = ld->start_epoch;
        b->position = ld->start_position + k * ld->batch;
        long left = ds->n - b->position;
        b->batch = (int)(left < ld->batch ? left : ld->batch);
        for (int r = 0; r < b->batch; r++) {
            int idx = (int)b->position + r;
            transform_test(ds, idx, b->x1 + r * f);
            b->indices[r] = idx;
            b->labels[r] = ds->labels[idx];
        }
    }
}

static void *worker_main(void *arg) {
    Loader *ld = arg;
    int *perm = ld->mode == LOADER_TRAIN_PAIRS ? xmalloc(sizeof(int) * ld->ds->n) : NULL;
    long perm_epoch = -1;
    pthread_mutex_lock(&ld->mu);
    while (!ld->stop) {
        long oldest = ld->held >= 0 ? ld->held : ld->next_consume;   // oldest batch whose slot is still taken
        if (ld->next_claim < ld->n_batches && ld->next_claim < oldest + ld->n_slots) {
            long k = ld->next_claim++;
            Batch *b = &ld->slots[k % ld->n_slots];
            pthread_mutex_unlock(&ld->mu);
            fill_batch(ld, k, b, perm, &perm_epoch);
            pthread_mutex_lock(&ld->mu);
            ld->slot_batch[k % ld->n_slots] = k;
            pthread_cond_broadcast(&ld->ready_cv);
        } else {
            pthread_cond_wait(&ld->work_cv, &ld->mu);
        }
    }
    pthread_mutex_unlock(&ld->mu);
    free(perm);
    return NULL;
}

static void start_workers(Loader *ld) {
    ld->stop = false;
    for (int w = 0; w < ld->n_workers; w++)
        CHECK(pthread_create(&ld->threads[w], NULL, worker_main, ld) == 0, "cannot start a loader thread");
}

// Workers finish the batch they are filling, then exit.
static void stop_workers(Loader *ld) {
    pthread_mutex_lock(&ld->mu);
    ld->stop = true;
    pthread_cond_broadcast(&ld->work_cv);
    pthread_mutex_unlock(&ld->mu);
    for (int w = 0; w < ld->n_workers; w++) pthread_join(ld->threads[w], NULL);
}

// The run restarts at (epoch, position) with an empty ring. Workers stopped: they read these fields unlocked.
static void restart_at(Loader *ld, long epoch, long position) {
    ld->start_epoch = epoch;
    ld->start_position = position;
    ld->n_batches = ld->mode == LOADER_TRAIN_PAIRS ? LONG_MAX : (ld->ds->n - position + ld->batch - 1) / ld->batch;
    ld->next_claim = ld->next_consume = 0;
    ld->held = -1;
    for (int s = 0; s < ld->n_slots; s++) ld->slot_batch[s] = -1;
}

Loader *loader_new(const Dataset *ds, LoaderMode mode, int batch, uint64_t seed, int n_workers) {
    CHECK(ds->n > 0 && batch > 0 && n_workers > 0, "loader needs images, a batch size and a worker");
    CHECK(mode == LOADER_TEST || batch <= ds->n, "training batch larger than the dataset (drop_last)");
    Loader *ld = xcalloc(1, sizeof *ld);
    ld->ds = ds;
    ld->mode = mode;
    ld->batch = batch;
    ld->shard_rows = batch;
    ld->seed = seed;
    ld->n_workers = n_workers;
    ld->n_slots = n_workers + 1 > 4 ? n_workers + 1 : 4;   // every worker can fill while the consumer holds one
    ld->image_floats = (long)ds->c * ds->input_size * ds->input_size;
    ld->batches_per_epoch = mode == LOADER_TRAIN_PAIRS ? ds->n / batch : (ds->n + batch - 1) / batch;
    ld->slots = xcalloc((size_t)ld->n_slots, sizeof(Batch));
    ld->slot_batch = xmalloc(sizeof(long) * ld->n_slots);
    ld->threads = xmalloc(sizeof(pthread_t) * n_workers);
    for (int s = 0; s < ld->n_slots; s++) {
        Batch *b = &ld->slots[s];
        b->x1 = xmalloc(sizeof(float) * batch * ld->image_floats);
        b->x2 = mode == LOADER_TRAIN_PAIRS ? xmalloc(sizeof(float) * batch * ld->image_floats) : NULL;
        b->labels = xmalloc(sizeof(int) * batch);
        b->indices = xmalloc(sizeof(int) * batch);
    }
    pthread_mutex_init(&ld->mu, NULL);
    pthread_cond_init(&ld->work_cv, NULL);
    pthread_cond_init(&ld->ready_cv, NULL);
    restart_at(ld, 0, 0);
    start_workers(ld);
    return ld;
}

// The workers are stopped first: they read the shard without the lock, and one that saw the new first row with the
// old row count would read past the epoch's order.
void loader_set_shard(Loader *ld, int rank, int size) {
    CHECK(ld->mode == LOADER_TRAIN_PAIRS && size >= 1 && rank >= 0 && rank < size && ld->batch % size == 0,
          "shard %d of %d of a batch of %d", rank, size, ld->batch);
    stop_workers(ld);
    ld->shard_rows = ld->batch / size;
    ld->shard_first = rank * ld->shard_rows;
    restart_at(ld, ld->start_epoch, ld->start_position);
    start_workers(ld);
}

void loader_seek(Loader *ld, long epoch, long position) {
    CHECK(epoch >= 0 && position >= 0 && position % ld->batch == 0, "seek position must be a multiple of batch");
    if (ld->mode == LOADER_TRAIN_PAIRS)
        CHECK(position / ld->batch < ld->batches_per_epoch, "seek position past the last full batch");
    else
        CHECK(position <= ld->ds->n, "seek position past the end of the dataset");
    stop_workers(ld);
    restart_at(ld, epoch, position);
    start_workers(ld);
}

bool loader_next(Loader *ld, Batch **out) {
    pthread_mutex_lock(&ld->mu);
    ld->held = -1;   // the previous batch is given back: its slot may be refilled
    pthread_cond_broadcast(&ld->work_cv);
    if (ld->next_consume >= ld->n_batches) {
        pthread_mutex_unlock(&ld->mu);
        *out = NULL;
        return false;
    }
    long k = ld->next_consume;
    int s = (int)(k % ld->n_slots);
    if (ld->slot_batch[s] != k) {
        double t0 = now_seconds();
        while (ld->slot_batch[s] != k) pthread_cond_wait(&ld->ready_cv, &ld->mu);
        ld->wait_seconds += now_seconds() - t0;
    }
    ld->held = k;
    ld->next_consume++;
    pthread_mutex_unlock(&ld->mu);
    *out = &ld->slots[s];
    return true;
}

double loader_wait_seconds(const Loader *ld) { return ld->wait_seconds; }
long loader_batches_per_epoch(const Loader *ld) { return ld->batches_per_epoch; }

void loader_free(Loader *ld) {
    if (!ld) return;
    stop_workers(ld);
    for (int s = 0; s < ld->n_slots; s++) {
        free(ld->slots[s].x1);
        free(ld->slots[s].x2);
        free(ld->slots[s].labels);
        free(ld->slots[s].indices);
    }
    free(ld->slots);
    free(ld->slot_batch);
    free(ld->threads);
    pthread_mutex_destroy(&ld->mu);
    pthread_cond_destroy(&ld->work_cv);
    pthread_cond_destroy(&ld->ready_cv);
    free(ld);
}
