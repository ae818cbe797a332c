from setuptools import find_packages, setup


def requirements():
    with open("requirements.txt") as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


setup(
    name="tf_tpe_tuner",
    version="0.1.0",
    description="Per-layer int8/float TPE search for tf_keras models, exported as TFLite",
    packages=find_packages(include=["tf_tpe_tuner", "tf_tpe_tuner.*"]),
    python_requires=">=3.10",
    install_requires=requirements(),
    extras_require={"ray": ["ray==2.60.0"]},
    entry_points={"console_scripts": ["tf-tpe-tune=tf_tpe_tuner.cli:run",
                                      "tf-tpe-export=tf_tpe_tuner.export_cli:run"]},
)
