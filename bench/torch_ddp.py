# PyTorch twin of kiln's data-parallel Fashion-MNIST run (issue 13): torch DistributedDataParallel
# (gloo, CPU) over WORLD processes of 1 thread each, the lesson-7 net and recipe of torch_fmnist.py
# (AdamW, one-cycle max lr 1e-2, no augmentation), global batch 128 (128 / WORLD a rank),
# DistributedSampler (seed 0), validation sharded too and summed with all_reduce. DDP's own
# bucketing and overlap (bucket_cap_mb 25), BatchNorm per rank as kiln's default.
# Prints per epoch the train loss, the test accuracy and the epoch's seconds (training + validation),
# then images/s over the epochs (60,000 per epoch), as kiln's metrics.json items_per_s.
# Usage: /usr/bin/python3 torch_ddp.py WORLD [EPOCHS]
import gzip, os, struct, sys, time
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F
import torch.distributed as dist, torch.multiprocessing as mp
from torch.utils.data.distributed import DistributedSampler

D = '/usr/share/datasets/fashion-mnist/'
BS = 128


def idx(p):
    with gzip.open(D + p) as f:
        data = f.read()
    nd = struct.unpack('>I', data[:4])[0] & 0xff
    dims = struct.unpack('>' + 'I' * nd, data[4:4 + 4 * nd])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * nd).reshape(dims)


def conv(ni, nf, stride=2):
    return nn.Sequential(nn.Conv2d(ni, nf, 3, stride, 1, bias=False), nn.BatchNorm2d(nf), nn.ReLU())


class Res(nn.Module):
    def __init__(s, nf):
        super().__init__(); s.c1 = conv(nf, nf, 1); s.c2 = conv(nf, nf, 1)

    def forward(s, x): return x + s.c2(s.c1(x))


def run(rank, world, epochs):
    torch.set_num_threads(1)
    os.environ['MASTER_ADDR'], os.environ['MASTER_PORT'] = '127.0.0.1', '29517'
    dist.init_process_group('gloo', rank=rank, world_size=world)
    torch.manual_seed(0)
    xtr = torch.tensor(idx('train-images-idx3-ubyte.gz'), dtype=torch.float32).div_(255).unsqueeze(1)
    ytr = torch.tensor(idx('train-labels-idx1-ubyte.gz'), dtype=torch.long)
    xte = torch.tensor(idx('t10k-images-idx3-ubyte.gz'), dtype=torch.float32).div_(255).unsqueeze(1)
    yte = torch.tensor(idx('t10k-labels-idx1-ubyte.gz'), dtype=torch.long)
    m, s = xtr.mean(), xtr.std(); xtr = (xtr - m) / s; xte = (xte - m) / s
    model = nn.Sequential(conv(1, 8), Res(8), conv(8, 16), Res(16), conv(16, 32), Res(32), conv(32, 16), Res(16),
                          nn.Conv2d(16, 10, 3, 2, 1), nn.BatchNorm2d(10), nn.Flatten())
    ddp = nn.parallel.DistributedDataParallel(model)
    sampler = DistributedSampler(range(len(xtr)), num_replicas=world, rank=rank, shuffle=True, seed=0)
    rbs = BS // world
    steps = epochs * ((len(sampler) + rbs - 1) // rbs)
    opt = torch.optim.AdamW(ddp.parameters(), lr=1e-3, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=steps)
    mine = torch.arange(rank, len(xte), world)  # this rank's test items
    dist.barrier()
    t0 = time.time()
    for ep in range(epochs):
        sampler.set_epoch(ep); order = torch.tensor(list(iter(sampler))); te = time.time()
        ddp.train()
        for i in range(0, len(order), rbs):
            ix = order[i:i + rbs]
            loss = F.cross_entropy(ddp(xtr[ix]), ytr[ix])
            opt.zero_grad(); loss.backward(); opt.step(); sched.step()
        ddp.eval(); correct = torch.zeros(1)
        with torch.no_grad():
            for i in range(0, len(mine), 1000):
                ix = mine[i:i + 1000]; correct += (model(xte[ix]).argmax(1) == yte[ix]).sum()
        dist.all_reduce(correct)
        if rank == 0:
            print(f'epoch {ep} train_loss {loss.item():.4f} acc {correct.item() / len(xte):.4f} '
                  f'epoch_s {time.time() - te:.2f}', flush=True)
    dist.barrier()
    if rank == 0:
        print(f'ranks {world} total_s {time.time() - t0:.1f} imgs_per_s {epochs * len(xtr) / (time.time() - t0):.0f}',
              flush=True)
    dist.destroy_process_group()


if __name__ == '__main__':
    world = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    mp.spawn(run, args=(world, epochs), nprocs=world, join=True)
