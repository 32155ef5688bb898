# The Python twin of bench_ops' text bench (bench/bench_text.c): the same rules (fastai v2's
# regexes) and split (NLTK's Treebank per chunk) that tests/fixtures/gen_text.py uses for the
# fixture, timed on the same documents (Austen paragraphs, fine-food reviews), one process;
# with N > 1 also a multiprocessing.Pool of N workers, as fastai's parallel_tokenize does.
# Run: /usr/bin/python3 bench/text_tok.py [DATASETS_DIR] [N]   (needs python3-nltk)
import csv, glob, os, sys, time
from multiprocessing import Pool
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'fixtures'))
from gen_text import rules, split

def tok(doc): return split(rules(doc))

def austen(d):
    docs = []
    for path in sorted(glob.glob(os.path.join(d, 'austen', '*.txt'))):
        para = []
        for line in open(path, encoding='utf-8'):
            if line.strip(): para.append(line)
            elif para: docs.append(''.join(para)); para = []
        if para: docs.append(''.join(para))
    return docs

def reviews(d):
    with open(os.path.join(d, 'fine_foods', 'train.csv'), encoding='utf-8', newline='') as f:
        return [r['review'] for r in csv.DictReader(f)]

def main():
    d = sys.argv[1] if len(sys.argv) > 1 else '../shared/datasets'
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    for name, docs in (('austen', austen(d)), ('fine_foods', reviews(d))):
        mb = sum(len(x.encode('utf-8')) for x in docs) / 1e6
        for workers in sorted({1, n}):
            t0 = time.time()
            if workers == 1: out = [tok(x) for x in docs]
            else:
                with Pool(workers) as p: out = p.map(tok, docs, chunksize=64)
            dt = time.time() - t0
            ntok = sum(len(o) for o in out)
            h = 1469598103934665603  # FNV-1a over every token's UTF-8 and a '\n' after each, as bench_text.c
            for o in out:
                for t in o:
                    for b in (t + '\n').encode('utf-8'): h = ((h ^ b) * 1099511628211) & 0xffffffffffffffff
            print(f'python text {name:<12} {len(docs)} documents, {mb:.2f} MB, {ntok} tokens (hash {h:016x}): {workers} process{"es" if workers > 1 else "  "} '
                  f'{dt:7.3f} s  {mb / dt:6.2f} MB/s  {ntok / dt / 1e6:5.2f} M tokens/s')

if __name__ == '__main__':
    main()
