"""Models and training: task (outputs, loss, scores), models, optim (optimisers, schedules),
loop (``train``) with batches, checkpoint and device, monitor (metric directions), transfer
(model files, refine modes), perceptron (the lecture's classics)."""
