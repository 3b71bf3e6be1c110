"""Deployment configurations written from a bundle, torch-free: a Triton model repository
(`triton`, its config text `pbtxt`, the raw-image model `triton_images`) and a DeepStream
nvinfer classifier (`deepstream`)."""
