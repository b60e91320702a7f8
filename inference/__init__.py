"""Using trained classifiers on measured patterns: reading scan files, preparing them like training
inputs, predicting with one model or an ensemble, calibration, evaluation on labelled sets, model
packaging and the bundled pretrained models."""
