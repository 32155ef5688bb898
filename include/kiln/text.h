/* kiln text: fastai's text pipeline, from raw documents to token ids.
 *
 * Tokenizing is fastai v2's: its rules on the raw text (fix_html, replace_rep, replace_wrep,
 * spaces around / # \, runs of spaces collapsed, xxup before ALL-CAPS words, xxmaj before
 * Capitalised ones, lowercase, xxbos first), then each whitespace-separated chunk split into
 * words and punctuation by the Penn Treebank rules (NLTK's TreebankWordTokenizer: don't ->
 * do n't, $5.99 -> $ 5.99, can't -> ca n't), with two of kiln's own choices that make it
 * closer to spaCy (which fastai uses): a chunk's final period is split off in every chunk, not
 * only at the end of the text, except after an abbreviation ("u.s.", "e.g.", "mr.", "etc."),
 * and double quotes of every kind ("`` ''") are the token ". Text is UTF-8; each byte that is
 * not valid UTF-8, and each NUL, becomes U+FFFD and is counted, never an error.
 *
 * The vocabulary is fastai's make_vocab: tokens by count (ties: first seen first) with at
 * least min_freq uses, at most max_vocab, the 9 special tokens first (so xxunk is 0 and
 * xxpad 1), padded with "xxfake" to a multiple of 8. Unknown tokens map to xxunk. */
#ifndef KILN_TEXT_H
#define KILN_TEXT_H

#include "kiln/core.h"
#include "kiln/data.h"

#ifdef __cplusplus
extern "C" {
#endif

/* fastai v2's special tokens in its order: the first 9 entries of every vocabulary. */
enum {
    KILN_TOK_UNK = 0, /* xxunk: a token the vocabulary does not hold */
    KILN_TOK_PAD,     /* xxpad */
    KILN_TOK_BOS,     /* xxbos: the start of a document */
    KILN_TOK_EOS,     /* xxeos */
    KILN_TOK_FLD,     /* xxfld: a new field of a multi-column text */
    KILN_TOK_REP,     /* xxrep N c: c repeated N times */
    KILN_TOK_WREP,    /* xxwrep N w: the word w repeated N times */
    KILN_TOK_UP,      /* xxup: the next word was in capitals */
    KILN_TOK_MAJ,     /* xxmaj: the next word was capitalised */
    KILN_TOK_N_SPECIAL
};
/* "xxunk" ... "xxmaj"; NULL outside [0, KILN_TOK_N_SPECIAL). */
const char *kiln_text_special(int i);

/* One tokenized document: tok[0..n) point into buf (NUL-terminated, never empty, no
 * whitespace inside). n_replaced counts the input bytes replaced by U+FFFD. */
typedef struct kiln_tokens {
    int64_t n;
    char **tok;
    char *buf;
    int64_t n_replaced;
} kiln_tokens;

void kiln_tokens_free(kiln_tokens *t); /* frees tok and buf and zeroes t (NULL is fine) */

/* fastai's rules alone: a malloc'd NUL-terminated UTF-8 string (free it), starting "xxbos ". */
kiln_status kiln_text_rules(const char *text, size_t len, char **out, int64_t *n_replaced);
/* The word split alone, on text taken as is (no rules, no lowercasing). */
kiln_status kiln_text_split(const char *text, size_t len, kiln_tokens *out);
/* Rules then split: what the language model and the classifier see. */
kiln_status kiln_text_tokenize(const char *text, size_t len, kiln_tokens *out);
/* Tokenizes n documents (texts[i] of lens[i] bytes; lens NULL: NUL-terminated) into out[0..n)
 * on n_threads threads (<= 1: this thread only). The result does not depend on n_threads. */
kiln_status kiln_text_tokenize_many(const char *const *texts, const size_t *lens, int64_t n, int n_threads,
                                    kiln_tokens *out);

/* Tokens back to text a person reads (fastai's decode_spec_tokens, then joined with spaces):
 * "xxmaj w" -> "W" (the first letter in capitals, the rest lower case), "xxup w" -> "W" in
 * capitals, "xxrep 4 !" -> "!!!!", "xxwrep 3 very" -> "very very very"; xxbos and xxpad are
 * left out; a rule token without its word is dropped, and so is the token after xxrep / xxwrep
 * that is not a count (fastai's). "I" comes back as "i" (fastai's rules mark no one-letter
 * capital). *out is malloc'd (free it). */
kiln_status kiln_text_decode(const char *const *tokens, int64_t n, char **out);

/* ---- vocabulary ---------------------------------------------------------------------------- */
typedef struct kiln_vocab kiln_vocab;

typedef struct kiln_vocab_params {
    int64_t max_vocab; /* at most this many tokens, specials included (fastai: 60,000) */
    int64_t min_freq;  /* a token used fewer times is left out (fastai v2: 3) */
} kiln_vocab_params;
kiln_vocab_params kiln_vocab_default_params(void); /* 60000, 3 */

/* Counts the tokens of docs[0..n_docs) and builds the vocabulary (p NULL: defaults). */
kiln_status kiln_vocab_build(const kiln_tokens *docs, int64_t n_docs, const kiln_vocab_params *p,
                             kiln_vocab **out);
/* A vocabulary from a list of tokens (the first 9 must be the specials in order). */
kiln_status kiln_vocab_from_list(const char *const *tokens, int64_t n, kiln_vocab **out);
/* A copy of v (NULL + message when out of memory). */
kiln_vocab *kiln_vocab_copy(const kiln_vocab *v);
void kiln_vocab_free(kiln_vocab *v);
int64_t kiln_vocab_size(const kiln_vocab *v);
const char *kiln_vocab_token(const kiln_vocab *v, int64_t id); /* NULL out of range */
int64_t kiln_vocab_id(const kiln_vocab *v, const char *token);  /* KILN_TOK_UNK when absent */
/* ids[0..doc->n) = the ids of doc's tokens; *n_unk (may be NULL) = how many were unknown. */
void kiln_vocab_numericalize(const kiln_vocab *v, const kiln_tokens *doc, int64_t *ids, int64_t *n_unk);
/* One token per line, UTF-8, written atomically (temp file + rename). */
kiln_status kiln_vocab_save(const kiln_vocab *v, const char *path);
/* Reads a saved vocabulary; a bad file (specials missing or out of order, an empty line, a
 * token with whitespace, a duplicate, invalid UTF-8) is an error naming the file and line. */
kiln_status kiln_vocab_load(const char *path, kiln_vocab **out);

/* fastai's match_embeds, for fine-tuning a pretrained language model on a new corpus: rows of
 * new_w (kiln_vocab_size(new_v), dim) for tokens old_v knows are copied from old_w
 * (kiln_vocab_size(old_v), dim); the others (and "xxfake") get the mean of old_w's rows. Use
 * dim 1 for the decoder's bias. *n_copied (may be NULL) counts the copied rows. */
kiln_status kiln_vocab_match_embeds(const kiln_vocab *old_v, const float *old_w, const kiln_vocab *new_v,
                                    int64_t dim, float *new_w, int64_t *n_copied);

/* ---- text tables (CSV) -------------------------------------------------------------------------
 * A CSV with a text column and optionally a label column (fine_foods/train.csv: "review",
 * "score"), read whole. Bad input is an error naming the file and line: a CSV error (unbalanced
 * quotes, a short record: io.h's reader), a missing column (the message lists the columns), an
 * empty file, an empty text or label, and, with need_two_classes, a label column with one class.
 * Classes are the distinct labels sorted by strcmp (fastai's CategoryMap sorts), y the class of
 * each row. */
typedef struct kiln_text_table {
    int64_t n;          /* rows */
    char **text;        /* n texts (may hold NUL bytes: text_len) */
    size_t *text_len;
    int64_t *line;      /* the line each row starts on */
    char **classes;     /* n_classes, sorted; NULL without a label column */
    int64_t n_classes;
    int64_t *y;         /* n class indices; NULL without a label column */
} kiln_text_table;

/* label_col NULL: texts only. */
kiln_status kiln_text_csv_read(const char *path, const char *text_col, const char *label_col, bool need_two_classes,
                               kiln_text_table *out);
void kiln_text_table_free(kiln_text_table *t);

/* ---- language-model batches ------------------------------------------------------------------
 * fastai's LM loader: each epoch the train documents are shuffled (kiln_data_permutation of
 * (seed, epoch); valid keeps its order), concatenated into one stream and cut into bs rows of
 * L = n_tokens / bs tokens (the remainder dropped); batch i is x = rows[:, p : p + len] and
 * y = rows[:, p + 1 : p + len + 1] (I64, (bs, len)), the windows following each other, so a
 * model that carries its hidden state across batches (detached) reads every row in order.
 * Train windows with variable_bptt are fastai 0.7's: the first bptt + 25 long, then
 * len = max(5, int(N(b, 5))) with b = bptt with probability 0.95, else bptt / 2, drawn from
 * (seed, epoch); when the drawn lengths add up to more than the row holds they are scaled down
 * to fit. Valid windows are bptt long (the last one shorter). Both splits have a fixed number
 * of batches: (L - 1) / bptt for train (the learner's schedules need it fixed), ceil of it for
 * valid.
 * Data-parallel (issue 13): bs is the global batch, all ranks' rows. With world ranks, rank r
 * makes the same stream (the same order of (seed, epoch)) and keeps rows [r bs / world,
 * (r + 1) bs / world) of it: its batch i is those rows of the global batch i, x and y
 * (bs / world, len), with the same windows on every rank (the variable lengths come from
 * (seed, epoch) alone), so the ranks' batches stacked in rank order are the one-rank batch bit
 * for bit, and a model on rank r carries the hidden state of its own rows. The valid split is
 * cut the same way (valid_bs / world rows a rank). bs and valid_bs must be divisible by world
 * (INVALID naming the field). kiln_data_n_items counts the documents as kiln_data_shard's valid
 * rule shares them out (a count; the rows are the shard). world 1 is the data as without it. */
typedef struct kiln_lm_data_params {
    int64_t bs;         /* rows (streams) per batch, all ranks together: 64 */
    int64_t valid_bs;   /* 0 = bs */
    int64_t bptt;       /* window length: 70 */
    bool variable_bptt; /* true: fastai 0.7's random train window lengths */
    int rank, world;    /* 0, 1: this process's rows of world ranks' (world 0 counts as 1; INVALID unless
                           0 <= rank < world) */
} kiln_lm_data_params;
kiln_lm_data_params kiln_lm_data_default_params(void);

/* Documents as token ids: train[i] has train_lens[i] ids, each in [0, vocab_size) (checked: an
 * id out of range is an error naming the document and position). The ids are copied. valid
 * may be NULL (n_valid 0): no valid split. NULL + message when a split is too short for one
 * window per row. */
kiln_data *kiln_lm_data_new(const int64_t *const *train, const int64_t *train_lens, int64_t n_train,
                            const int64_t *const *valid, const int64_t *valid_lens, int64_t n_valid,
                            int64_t vocab_size, const kiln_lm_data_params *p);
/* The window of batch i of split in the current epoch: its start in each row and its length.
 * INVALID when d is not an LM source or i is out of range. */
kiln_status kiln_lm_data_window(kiln_data *d, kiln_data_split split, int64_t i, int64_t *start, int64_t *len);

/* ---- classifier batches ------------------------------------------------------------------------
 * fastai's text classifier loaders: documents of different lengths batched with padding
 * (xxpad, id 1) in front (fastai v1's pad_first), x (B, L) I64 with L the longest of the batch,
 * y (B) I64. Train order per epoch is fastai's SortishSampler from (seed, epoch): a random
 * permutation, cut into chunks of 50 batches, each sorted by length (longest first), cut into
 * batches, the batch holding the longest document first and the others shuffled; the short last
 * batch is dropped (fastai's train loader drops it, so a BatchNorm head never sees one item).
 * Valid is sorted by length, longest first (SortSampler), every document kept.
 * Data-parallel (issue 13): bs is the global batch, all ranks' documents. With world ranks every
 * rank draws the same SortishSampler order of (seed, epoch) and its batch i holds items rank,
 * rank + world, ... of global batch i (bs / world documents, padded to their own longest), so
 * the ranks' items of batch i together are the one-rank batch i's. Valid: the length-sorted split
 * is sharded by kiln_data_shard's valid rule (items rank, rank + world, ... of that order, no
 * padding), then cut into batches of valid_bs / world; the shards partition the split, a rank may
 * have one batch fewer, or none. bs and valid_bs must be divisible by world (INVALID naming the
 * field). kiln_data_n_items counts the rank's valid documents, and for train its share of the
 * documents by the same rule (a count). world 1 is the data as without it. */
typedef struct kiln_clas_data_params {
    int64_t bs;       /* 64, all ranks together */
    int64_t valid_bs; /* 0 = bs */
    int rank, world;  /* 0, 1: this process's share of world ranks' (world 0 counts as 1; INVALID unless
                         0 <= rank < world) */
} kiln_clas_data_params;
kiln_clas_data_params kiln_clas_data_default_params(void);

/* Documents as ids below vocab_size (copied), labels in [0, n_classes). valid may be NULL
 * (n_valid 0). Errors name the split, document and position of a bad id or label, and a
 * document with no token. */
kiln_data *kiln_clas_data_new(const int64_t *const *train, const int64_t *train_lens, const int64_t *train_y,
                              int64_t n_train, const int64_t *const *valid, const int64_t *valid_lens,
                              const int64_t *valid_y, int64_t n_valid, int64_t vocab_size, int64_t n_classes,
                              const kiln_clas_data_params *p);
/* The documents (indices into the split as given) of this rank's batch i in the current epoch's
 * order; *n set to their count. NULL + INVALID when d is not a classifier source or i is out of
 * range. */
const int64_t *kiln_clas_data_batch_items(kiln_data *d, kiln_data_split split, int64_t i, int64_t *n);
/* The ids of document i of split (as given, no padding), *len of them; NULL + INVALID when d is
 * not a classifier source or i is out of range. */
const int64_t *kiln_clas_data_item(kiln_data *d, kiln_data_split split, int64_t i, int64_t *len);
/* A new source with d's documents and batch sizes as one rank (world 1): both splits whole, as
 * rank 0 needs them to interpret the validation split after a data-parallel fit. NULL + INVALID
 * when d is not a classifier source. */
kiln_data *kiln_clas_data_whole(kiln_data *d);

/* ---- a language-model corpus from files ---------------------------------------------------------
 * kiln_text_lm_data_open reads sources, each a text file (its documents are its paragraphs:
 * blank-line separated, so a novel gives thousands), a folder (every .txt file under it, sorted,
 * recursively) or a .csv (one document per row, column text_col), puts valid_pct of the
 * documents (a permutation of split_seed) aside for validation, tokenizes both on n_threads
 * threads, builds the vocabulary from the train documents (or uses vocab_in) and returns the LM
 * batches, with the vocabulary in *vocab (free it) and what was read in *info (may be NULL).
 * Data-parallel: every rank reads and tokenizes the whole corpus (the same split, vocabulary
 * and counts in *info on each) and keeps its rows (lm.rank, lm.world); the classifier's opener
 * below does the same with clas.rank, clas.world. */
typedef struct kiln_text_lm_data_params {
    const char *text_col;       /* CSV sources: "text" */
    double valid_pct;           /* 0.1 */
    uint64_t split_seed;        /* 42 */
    kiln_vocab_params vocab;    /* fastai's 60000, 3 */
    const kiln_vocab *vocab_in; /* NULL: built from the train documents */
    kiln_lm_data_params lm;     /* bs 64, bptt 70, variable; rank, world: this rank's rows */
    int n_threads;              /* tokenizer threads, 2 */
} kiln_text_lm_data_params;
kiln_text_lm_data_params kiln_text_lm_data_default_params(void);

typedef struct kiln_text_corpus_info {
    int64_t n_files, n_docs[2], n_tokens[2], n_unk[2]; /* [train, valid] */
    int64_t n_replaced;                                /* input bytes that were not UTF-8 */
    double seconds_tokenize;
} kiln_text_corpus_info;

kiln_data *kiln_text_lm_data_open(const char *const *sources, int n_sources, const kiln_text_lm_data_params *p,
                                  kiln_vocab **vocab, kiln_text_corpus_info *info);

/* ---- a classifier's data from CSVs ---------------------------------------------------------------
 * kiln_text_clas_data_open reads train_csv (and valid_csv, or puts valid_pct of the train rows
 * aside with split_seed when it is NULL), columns text_col and label_col, tokenizes on n_threads,
 * takes the vocabulary from vocab_in (a language model's: the classifier must use the ids its
 * encoder learnt) or builds it from the train texts, and returns the classifier batches; *vocab
 * (free it), *classes (the train labels sorted; kiln_text_classes_free) and *info (may be NULL)
 * are set. A valid label the train rows do not have is an error naming the file and line. */
typedef struct kiln_text_clas_data_params {
    const char *text_col, *label_col; /* "text", "label" */
    double valid_pct;                 /* without valid_csv: 0.2 */
    uint64_t split_seed;              /* 42 */
    kiln_vocab_params vocab;
    const kiln_vocab *vocab_in;
    kiln_clas_data_params clas;       /* bs 64; rank, world: this rank's documents */
    int n_threads;                    /* 2 */
} kiln_text_clas_data_params;
kiln_text_clas_data_params kiln_text_clas_data_default_params(void);

typedef struct kiln_text_classes {
    char **name;
    int64_t n;
} kiln_text_classes;
void kiln_text_classes_free(kiln_text_classes *c);

kiln_data *kiln_text_clas_data_open(const char *train_csv, const char *valid_csv, const kiln_text_clas_data_params *p,
                                    kiln_vocab **vocab, kiln_text_classes *classes, kiln_text_corpus_info *info);

#ifdef __cplusplus
}
#endif

#endif
