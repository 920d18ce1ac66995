# Run with a venv that has eai-sparsify and probsae (e.g. .venv-bench, benchmarks/requirements.txt):
#   .venv-bench/bin/python scripts/ecosystem/check_sparsify_import.py
"""A SAE created and saved by the real sparsify package, imported by probsae; compare outputs."""
import tempfile, torch, subprocess, sys, json
from sparsify import SparseCoder, SparseCoderConfig
torch.manual_seed(0)
d = 64
sc = SparseCoder(d, SparseCoderConfig(k=8, num_latents=512), device="cpu", dtype=torch.float32)
with torch.no_grad():  # make the encoder bias and b_dec non-trivial
    sc.encoder.bias.normal_(0, 0.1); sc.b_dec.normal_(0, 0.1)
tmp = tempfile.mkdtemp()
sc.save_to_disk(f"{tmp}/layers.0")
rc = subprocess.run([sys.executable, "-m", "probsae", "import", f"{tmp}/layers.0", "--format", "sparsify", "--out", f"{tmp}/imported"], capture_output=True, text=True)
print(rc.stdout[-500:], rc.stderr[-500:])
import probsae
sae = probsae.load_sae(f"{tmp}/imported").eval()
x = torch.randn(1000, d)
ours = sae(x)
enc = sc.encode(x)
theirs = sc.decode(enc.top_acts, enc.top_indices)
print("max |recon diff|:", float((ours.recon.detach() - theirs.detach()).abs().max()), " recon scale:", float(theirs.abs().mean()))
dense = torch.zeros(1000, 512).scatter(1, enc.top_indices, enc.top_acts)
print("max |code diff|:", float((ours.codes.detach() - dense.detach()).abs().max()))
m = probsae.evaluate(sae, x)
print("probsae evaluate on the imported SAE:", json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in m.items()}))
