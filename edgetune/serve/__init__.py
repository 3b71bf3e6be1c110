"""`edgetune serve`: a bundle behind Triton Inference Server (PyTriton), torch-free: the server
(`server`), what each request runs (`infer`), and the libpython Triton's Python backend
embeds (`libpython`)."""
