"""pytest plugin: run llama.cpp's server test suite against `hearth serve` with a local model.

Every preset of utils.py downloads a tiny model from the Hub, which is not reachable here; this
plugin points each preset at HEARTH_TEST_MODEL instead (one thread per server) and leaves
utils.py untouched. Loaded with `-p hearth_plugin`.
"""

import os

import utils

MODEL = os.environ["HEARTH_TEST_MODEL"]


def _local(make):
    def preset():
        server = make()
        server.model_hf_repo = None
        server.model_hf_file = None
        server.model_url = None
        server.model_file = MODEL
        server.n_threads = 1
        return server

    return staticmethod(preset)


for _name, _value in list(vars(utils.ServerPreset).items()):
    if isinstance(_value, staticmethod) and _name != "load_all":
        setattr(utils.ServerPreset, _name, _local(_value.__func__))

# Nothing to download.
utils.ServerPreset.load_all = staticmethod(lambda: None)
utils.ServerProcess.model_hf_repo = None
utils.ServerProcess.model_hf_file = None
