"""The target domain between training and export: which images calibrate INT8 and judge the
artifacts, and the adaptation step's place in the pipeline. Torch-free here; the methods
themselves (bn, tent, pseudo) train in `edgetune.train.adapt` and `edgetune.train.pseudo`."""
