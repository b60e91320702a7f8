"""The Hydra configs of crystalstream, installed as the package ``crystalstream_conf``.

The YAML files beside this one are package data; ``generator.config.conf_dir()`` finds this
folder in a wheel install, an editable install and a plain checkout alike.
"""
