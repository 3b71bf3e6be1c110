"""Triton Python-backend model: encoded image bytes in, the bundle's preprocessed tensor out.

`edgetune deploy triton --raw-images` copies this file as `<name>_preprocess/1/model.py`; Triton's
Python backend runs it, with `pip install edgetune` (numpy, pillow) in that backend's
environment so the one preprocessing (`edgetune.preprocess`) runs here too. A request whose
bytes do not decode is answered with its own error; the others batched with it are not.
"""

from __future__ import annotations

import json

IMAGE = "image"  # the input: one encoded image (JPEG, PNG, …) per batch row, TYPE_STRING
PREPROCESS = "preprocess"  # the config parameter holding the manifest's input record, as JSON


def preprocess_rows(rows, pre):
    """A request's (N, 1) array of image bytes -> (N, 3, H, W) float32, or an InputError."""
    import numpy as np

    from edgetune.preprocess import decode_image

    return np.stack([pre.apply(decode_image(bytes(row[0]) if len(row) else b"")) for row in rows])


class TritonPythonModel:
    def initialize(self, args):
        from edgetune.preprocess import Preprocess

        config = json.loads(args["model_config"])
        record = json.loads(config["parameters"][PREPROCESS]["string_value"])
        self.pre = Preprocess.from_dict(record)
        self.output = config["output"][0]["name"]

    def execute(self, requests):
        import triton_python_backend_utils as pb_utils  # exists inside Triton's Python backend only

        from edgetune.errors import InputError

        responses = []
        for request in requests:
            rows = pb_utils.get_input_tensor_by_name(request, IMAGE).as_numpy()
            try:
                batch = preprocess_rows(rows, self.pre)
            except InputError as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(self.output, batch)]))
        return responses
