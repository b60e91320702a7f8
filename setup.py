"""Package list for setuptools (everything else is in pyproject.toml).

The code packages are found automatically; the Hydra configs in ``conf/`` are installed as the
package ``crystalstream_conf`` (their YAML files are its package data, see pyproject.toml), so a
wheel carries them and ``generator.config.conf_dir()`` finds them outside a checkout.
pyproject.toml cannot combine automatic discovery with a renamed folder, hence this file.
"""
from setuptools import find_namespace_packages, find_packages, setup

CODE = ["generator", "simulator", "evaluation", "cluster", "trainer", "inference"]
# the config groups (conf/model, conf/trainer, ...) are listed too: they hold only YAML files
CONF_GROUPS = [f"crystalstream_conf.{g}" for g in find_namespace_packages(where="conf", exclude=["*__pycache__*"])]

setup(
    packages=find_packages(include=[p for name in CODE for p in (name, f"{name}.*")])
    + ["crystalstream_conf"] + CONF_GROUPS,
    package_dir={"crystalstream_conf": "conf"},
)
