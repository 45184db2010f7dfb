"""Experiment (not used by latentsweep): train latent sizes 5, 10, 15, 20 as one stacked model.

    python benchmarks/proto_stacked_sizes.py

The first convolution is shared by all sizes (one conv with 4x16 output channels, since every size
sees the same batch), the second and the transposed convolutions are grouped (groups=4), the linear
layers are batched matrix products, and latent slots beyond a size are masked. It prints the
throughput of the stacked step; compare 4 x its images/s with bench_train.py's per-model rate.
On the 2-core CPU it gave 1,538 size-sets/s, i.e. 6,151 model-images/s against about 6,500 for
separate models: no gain, which is why the sweep still trains sizes one after another there.
Random initialisation and data: this times the arithmetic only.
"""
import time, torch, torch.nn as nn, torch.nn.functional as F
dims = [5, 10, 15, 20]; K = len(dims); D = max(dims); c1, c2, H = 16, 32, 256
torch.manual_seed(0)
class Stacked(nn.Module):
    def __init__(s):
        super().__init__()
        s.conv1 = nn.Conv2d(1, K*c1, 4, 2, 1)
        s.conv2 = nn.Conv2d(K*c1, K*c2, 4, 2, 1, groups=K)
        s.w1 = nn.Parameter(torch.randn(K, c2*49, H) * 0.02); s.b1 = nn.Parameter(torch.zeros(K, H))
        s.w2 = nn.Parameter(torch.randn(K, H, 2*D) * 0.02); s.b2 = nn.Parameter(torch.zeros(K, 2*D))
        s.w3 = nn.Parameter(torch.randn(K, D, H) * 0.02); s.b3 = nn.Parameter(torch.zeros(K, H))
        s.w4 = nn.Parameter(torch.randn(K, H, c2*49) * 0.02); s.b4 = nn.Parameter(torch.zeros(K, c2*49))
        s.dconv1 = nn.ConvTranspose2d(K*c2, K*c1, 4, 2, 1, groups=K)
        s.dconv2 = nn.ConvTranspose2d(K*c1, K, 4, 2, 1, groups=K)
        mask = torch.zeros(K, D)
        for k, d in enumerate(dims): mask[k, :d] = 1
        s.register_buffer("mask", mask)
    def forward(s, x, eps):
        B = len(x)
        h = F.relu(s.conv2(F.relu(s.conv1(x)))).reshape(B, K, c2*49).transpose(0, 1)  # K,B,F
        h = F.relu(torch.baddbmm(s.b1[:, None], h, s.w1))
        out = torch.baddbmm(s.b2[:, None], h, s.w2)
        mu, lv = out[..., :D] * s.mask[:, None], out[..., D:] * s.mask[:, None]
        z = (mu + eps * torch.exp(0.5 * lv)) * s.mask[:, None]
        h = F.relu(torch.baddbmm(s.b3[:, None], z, s.w3))
        h = F.relu(torch.baddbmm(s.b4[:, None], h, s.w4))  # K,B,c2*49
        h = h.transpose(0, 1).reshape(B, K*c2, 7, 7)
        logits = s.dconv2(F.relu(s.dconv1(h)))  # B,K,28,28
        return logits, mu, lv
m = Stacked(); opt = torch.optim.Adam(m.parameters(), 1e-3)
x_all = torch.rand(8192, 1, 28, 28)
def step(x):
    eps = torch.randn(K, len(x), D)
    logits, mu, lv = m(x, eps)
    rec = F.binary_cross_entropy_with_logits(logits, x.expand(-1, K, -1, -1), reduction="none").sum((2, 3))  # B,K
    kl = (-0.5 * (1 + lv - mu**2 - lv.exp())).sum(2)  # K,B
    loss = rec.mean(0).sum() + kl.mean(1).sum()
    opt.zero_grad(); loss.backward(); opt.step()
for bs in (128,):
    for i in range(5): step(x_all[:bs])
    t = time.perf_counter(); n = 0
    for i in range(0, 8192, bs): step(x_all[i:i+bs]); n += bs
    dt = time.perf_counter() - t
    print(f"stacked 4 sizes bs={bs}: {n/dt:,.0f} img/s per size-set -> equivalent separate rate {4*n/dt:,.0f} model-img/s")
