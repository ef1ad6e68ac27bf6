"""Small pretrained networks of our own, trained on the CPU from prepared datasets (scripts/train_*.py).

- `sync`: the lip-sync expert (mouth window + Whisper-base audio window -> embeddings, cosine = in sync), behind the
  `lipsync_*` metrics (`emogs.eval.lipsync`) and the training loss `sync_loss`.
- `aunet`: AUNet (face crop -> 17 AU intensities), behind `au_consistency_loss`.
- `crops`: the landmark-aligned crops both use, with a differentiable sampler for rendered frames.
Weights: `weights/<name>.safetensors` (float16) with `weights/<name>.json` (config, training data,
held-out identities, validation numbers). Pure modules: tensors in, tensors out.
"""
