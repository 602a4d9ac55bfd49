"""Issue 33: CPU seconds (process_time, 1 thread) of a training step (batch 32) and a sampling step (batch 16) of the default U-Net."""
import sys, time, json, os
import torch
torch.set_num_threads(1)
from annotated_pipeline import AnnotatedUNet2DModel
from annotated_pipeline.utils.hardware import resolve_precision, autocast
unet = AnnotatedUNet2DModel()  # the default 0.86M U-Net, 28x28x1
opt = torch.optim.AdamW(unet.parameters(), 1e-3)
prec = sys.argv[1] if len(sys.argv) > 1 else "auto"
p = resolve_precision(prec, "cpu")
x = torch.randn(32, 1, 28, 28); t = torch.randint(0, 1000, (32,))
def train_step():
    with autocast(p):
        loss = (unet(x, t).sample - x).pow(2).mean()
    loss.backward(); opt.step(); opt.zero_grad()
def sample_step():
    with torch.no_grad(), autocast(p):
        unet(x[:16], t[:16])
out = {"requested": prec, "precision": p, "aten": torch.backends.cpu.get_cpu_capability(), "load": os.getloadavg()[0]}
for name, fn, n in (("train", train_step, 5), ("sample", sample_step, 10)):
    fn()
    c = time.process_time(); w = time.perf_counter()
    for _ in range(n): fn()
    out[name + "_cpu_s"] = (time.process_time() - c) / n; out[name + "_wall_s"] = (time.perf_counter() - w) / n
print(json.dumps(out))
