"""The flag table (parameters.py + flags.py): help on every flag, ranges and --params types refused by name, the
config's truth (removed fields, teacher tuple, one feature-set table) and the bundled model's lineage."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex

import pytest
from conftest import ROOT, write_converted

import config_fields
import flags
import parameters
from parameters import Config, ConfigError, OptimizerSearchSpace

# train.py's flags before the flag table (commit e606739), less the modes that became evaluate.py, export.py and
# experiments/soup.py (--evaluate-only --model-path --images-dir --detector --assume-face --soup --recalibrate-bn
# --export --export-path): the README's commands use these names, so each must still exist.
TRAIN_FLAGS = [
    "--data", "--model", "--features", "--epochs", "--batch-size", "--seed", "--out", "--params", "--resume",
    "--evaluate", "--no-evaluate", "--verbose", "--keep-prob", "--learning-rate", "--learning-rate-decay",
    "--decay-step", "--optimizer", "--optimizer-param", "--schedule", "--warmup-epochs", "--weight-decay",
    "--global-clipnorm", "--label-smoothing", "--mixup-alpha", "--augment", "--no-augment", "--random-erasing",
    "--svm-kernel", "--svm-c", "--early-stopping-patience", "--tta", "--no-tta", "--soft-labels", "--no-soft-labels",
    "--save-model", "--no-save-model", "--init-from", "--teacher", "--distill-weight",
    "--use-batchnorm-after-conv-layers", "--no-use-batchnorm-after-conv-layers",
    "--use-batchnorm-after-fully-connected-layers", "--no-use-batchnorm-after-fully-connected-layers",
    "--initializer", "--width", "--standardize-features", "--no-standardize-features", "--trunc-trainset-to",
    "--trunc-validationset-to",
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_converted(tmp_path_factory.mktemp("converted"))


def train_parser() -> argparse.ArgumentParser:
    import train

    return train.build_parser()


def test_every_train_flag_of_before_still_exists_and_has_help():
    parser = train_parser()
    options = {option for action in parser._actions for option in action.option_strings}
    assert set(TRAIN_FLAGS) <= options, sorted(set(TRAIN_FLAGS) - options)
    for action in parser._actions:
        assert action.help and action.help != argparse.SUPPRESS and len(action.help) > 10, action.option_strings


def test_every_config_field_describes_itself():
    """Help on every field; a choice list or a range on every str and number field that has a closed set."""
    for section in (parameters.Dataset, parameters.Network, parameters.Hyperparams, parameters.Training,
                    parameters.VideoPredictor, OptimizerSearchSpace):
        for f in dataclasses.fields(section):
            assert len(f.metadata.get("help", "")) > 10, f"{section.__name__}.{f.name} has no help"
            kind = config_fields.field_kind(f)
            if kind in ("int", "float", "range"):
                assert f.metadata.get("bounds") is not None, f"{section.__name__}.{f.name} has no range"


def test_no_flag_is_defined_twice_in_the_scripts():
    """train.py, optimize_hyperparams.py and reproduce_table.py define no flag of a Config field themselves."""
    names = {config_fields.flag_name(f) for _, f in Config.fields().values()}
    names |= {config_fields.flag_name(f) for f in dataclasses.fields(OptimizerSearchSpace)}
    for script in ("train.py", "optimize_hyperparams.py", "experiments/reproduce_table.py"):
        text = (ROOT / script).read_text()
        own = {name for name in names if f'add_argument("{name}"' in text or f"add_argument('{name}'" in text}
        assert not own, f"{script} defines {sorted(own)} itself"


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--learning-rate", "inf", "--learning-rate: inf must be a finite number"),
        ("--learning-rate", "nan", "--learning-rate: nan must be a finite number"),
        ("--learning-rate", "0", "--learning-rate: 0.0 must be > 0"),
        ("--batch-size", "-4", "--batch-size: -4 must be >= 1"),
        ("--epochs", "0", "--epochs: 0 must be >= 1"),
        ("--keep-prob", "1.5", "--keep-prob: 1.5 must be <= 1"),
        ("--optimizer-param", "1", "--optimizer-param: 1.0 must be < 1"),
        ("--label-smoothing", "-0.1", "--label-smoothing: -0.1 must be >= 0"),
        ("--distill-weight", "2", "--distill-weight: 2.0 must be <= 1"),
        ("--weight-decay=-inf", None, "--weight-decay: -inf must be a finite number"),
        ("--global-clipnorm", "-1", "--global-clipnorm: -1.0 must be >= 0"),
        ("--seed", "-1", "--seed: -1 must be >= 0"),
        ("--width", "0", "--width: 0 must be >= 1"),
    ],
)
def test_out_of_range_flags_are_one_line_naming_the_flag(data_dir, tmp_path, capsys, flag, value, message):
    import train

    with pytest.raises(SystemExit) as exit_info:
        train.main(["--data", str(data_dir), "--out", str(tmp_path / "run"), flag, *([value] if value else [])])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.strip().splitlines()[-1].endswith(f": error: {message}") and "Traceback" not in err  # any argv[0]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"learning_rate": None}, "learning_rate: null is not a valid value; give a number"),
        ({"hyperparams": {"keep_prob": None}}, "keep_prob: null is not a valid value"),
        ({"epochs": "3"}, "epochs: '3' is not an integer"),
        ({"epochs": 2.5}, "epochs: 2.5 is not an integer"),
        ({"augment": "yes"}, "augment: 'yes' is not true or false"),
        ({"batch_size": True}, "batch_size: True is not an integer"),
        ({"optimizer": "sgd"}, "optimizer: unknown 'sgd'; choose from momentum, adam"),
        ({"teacher": 5}, "teacher: 5 is not a list of names"),
        ({"learning_rate": float("inf")}, "learning_rate: inf must be a finite number"),
        ({"expressions": ["Happy", "Joy"]}, "expressions: unknown 'Joy'"),
        ({"learning_rat": 0.1}, "unknown parameter(s) ['learning_rat']"),
    ],
)
def test_params_file_with_a_bad_value_is_one_line_naming_file_and_key(data_dir, tmp_path, capsys, params, message):
    import train

    path = tmp_path / "params.json"
    path.write_text(json.dumps(params))  # inf is written as Infinity, which json (and so --params) reads
    assert train.main(["--data", str(data_dir), "--params", str(path), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"train.py: error: {path}: {message}" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_teacher_is_a_tuple_and_the_comma_form_still_works(data_dir):
    import train

    for given in (["a.keras,b.keras"], ["a.keras", "b.keras"]):
        config = train.build_config(train.parse_args(["--data", str(data_dir), "--teacher", *given]))
        assert config.training.teacher == ("a.keras", "b.keras")
    assert Config().with_overrides({"teacher": "a.keras, b.keras"}).training.teacher == ("a.keras", "b.keras")
    assert Config().to_dict()["training"]["teacher"] == []


# The config saved in the first bundled model's metadata (runs/fernet16_kd2), before the flag table and clipping.
OLD_BUNDLED_CONFIG = json.loads(
    """
{
 "dataset": {
  "name": "Fer2013",
  "expressions": [
   "Angry",
   "Disgust",
   "Fear",
   "Happy",
   "Sad",
   "Surprise",
   "Neutral"
  ],
  "feature_set": "raw",
  "shape_predictor_path": null,
  "trunc_trainset_to": -1,
  "trunc_validationset_to": -1,
  "trunc_testset_to": -1
 },
 "network": {
  "model": "fernet",
  "input_size": 48,
  "output_size": 7,
  "activation": "relu",
  "loss": "categorical_crossentropy",
  "use_batchnorm_after_conv_layers": true,
  "use_batchnorm_after_fully_connected_layers": false,
  "width": 16,
  "standardize_features": true
 },
 "hyperparams": {
  "keep_prob": 0.7,
  "learning_rate": 0.01,
  "learning_rate_decay": 0.864,
  "decay_step": 50,
  "optimizer": "momentum",
  "optimizer_param": 0.9,
  "schedule": "cosine",
  "warmup_epochs": 1.0,
  "weight_decay": 0.0005,
  "label_smoothing": 0.1,
  "mixup_alpha": 0.0,
  "augment": true,
  "random_erasing": 0.3,
  "svm_kernel": "rbf",
  "svm_c": 1.0
 },
 "training": {
  "batch_size": 128,
  "epochs": 30,
  "seed": 3,
  "save_model": true,
  "early_stopping_patience": 0,
  "tta": false,
  "soft_labels": false,
  "init_from": "runs/fernet16_kd/model.keras",
  "teacher": "runs/fernet16_e80/model.keras,runs/fernet16_sgdr/model.keras,runs/fernet16_kd/model.keras",
  "distill_weight": 0.5
 }
}
"""
)


def test_old_saved_configs_with_removed_fields_still_load():
    """The first bundled model's config was saved with activation, loss, name, shape_predictor_path,
    trunc_testset_to and output_size, which nothing read: they are dropped, its comma-separated teacher becomes a
    tuple."""
    saved = json.loads(json.dumps(OLD_BUNDLED_CONFIG))
    assert {"activation", "loss", "output_size"} <= set(saved["network"]) and "name" in saved["dataset"]
    config = Config.from_saved(saved)
    assert config.training.teacher == tuple(saved["training"]["teacher"].split(","))
    assert config.hyperparams.global_clipnorm == 0.0  # saved before clipping existed: trained without it
    flat = config.flat()
    assert not {"activation", "loss", "output_size", "name", "shape_predictor_path", "trunc_testset_to"} & set(flat)
    with pytest.raises(ConfigError, match="unknown parameter"):  # a --params file still may not have them
        Config().with_overrides({"activation": "relu"})


def test_choice_lists_and_the_feature_set_table_are_defined_once():
    from data.features import FEATURE_PARTS
    from inference.faces import DETECTORS
    from models.export import EXPORT_FORMATS
    from models.svm import SVM_KERNELS

    assert FEATURE_PARTS is parameters.FEATURE_PARTS and SVM_KERNELS is parameters.SVM_KERNELS
    assert EXPORT_FORMATS is parameters.EXPORT_FORMATS and DETECTORS is parameters.DETECTORS
    assert parameters.FEATURE_SETS == {"raw": 0, "landmarks": 136, "landmarks_hog": 208,
                                       "landmarks_hog_windows": 2728}


def test_search_ranges_have_their_own_flags_and_are_checked():
    parser = argparse.ArgumentParser(prog="x", allow_abbrev=False)
    flags.add_fields(parser, OptimizerSearchSpace)
    space = flags.replace_from_args(OptimizerSearchSpace(), parser.parse_args(
        ["--learning-rate-range", "0.001", "0.01", "--optimizers", "adam,momentum"]))
    assert space.learning_rate == (0.001, 0.01) and space.optimizer == ("adam", "momentum")
    with pytest.raises(ConfigError, match="search space keep_prob: max 1.5 must be <= 1"):
        OptimizerSearchSpace(keep_prob=(0.5, 1.5)).validate()


def _commands(meta: dict) -> list[list[str]]:
    return [shlex.split(command)[2:] for command in meta["training_lineage"]]  # less "python train.py"


def test_bundled_lineage_is_what_the_code_builds_from_its_runs_configs(tmp_path):
    """The bundled model's training_lineage equals training.lineage's commands for the run folders it names, and
    the last command trains exactly the config saved in the model. The first four runs predate gradient clipping
    (their configs lack global_clipnorm, read as 0), so their commands must say --global-clipnorm 0 to mean what
    ran; the later runs (the photo fine-tune on) trained with today's default clipping."""
    import train
    from training.lineage import training_lineage

    meta = json.loads((ROOT / "models" / "pretrained" / "fer_model.meta.json").read_text())
    configs = {}
    for argv in _commands(meta):
        args = train.parse_args(argv)
        configs[str(args.out)] = train.build_config(args)
        (tmp_path / args.out).mkdir(parents=True)
        (tmp_path / args.out / "config.json").write_text(json.dumps(configs[str(args.out)].to_dict()))
    final = Config.from_saved(meta["config"])
    # the lineage's last command is the model's own config, its models named by their runs: the last run started
    # from the bundled model of the time (fernet16_photo) and distilled from it and the committed width-24 teacher
    runs = {"models/pretrained/fer_model.keras": "runs/fernet16_photo/model.keras",
            "experiments/teachers/fernet24_kd_e80.keras": "runs/fernet24_kd_e80/model.keras"}
    tr = final.training
    final = final.with_overrides({"init_from": runs.get(tr.init_from, tr.init_from),
                                  "teacher": [runs.get(t, t) for t in tr.teacher]})
    assert configs[str(args.out)] == final
    clipnorms = [config.hyperparams.global_clipnorm for config in configs.values()]
    assert clipnorms[:4] == [0.0] * 4 and clipnorms[4:] == [5.0] * (len(clipnorms) - 4) and len(clipnorms) > 4
    lineage = training_lineage(args.out, "fer2013_features", root=tmp_path)
    assert lineage == meta["training_lineage"]
    embedded = json.loads(__import__("zipfile").ZipFile(ROOT / "models" / "pretrained" / "fer_model.keras")
                          .read("fer_metadata.json"))
    assert embedded["training_lineage"] == lineage and meta["training_command"] == lineage[-1]


def test_lineage_continues_from_a_model_that_carries_its_own(tmp_path):
    """A run that fine-tunes the bundled model (whose run folders are gone) gets the bundled model's stored
    lineage, then its own command, which names the bundled model by its last run."""
    import shutil

    from training.lineage import training_lineage

    bundled = ROOT / "models" / "pretrained" / "fer_model.keras"
    (tmp_path / "models" / "pretrained").mkdir(parents=True)
    shutil.copy(bundled, tmp_path / "models" / "pretrained" / "fer_model.keras")
    (tmp_path / "runs" / "next").mkdir(parents=True)
    config = Config().with_overrides({"model": "fernet", "feature_set": "raw", "epochs": 2,
                                      "init_from": "models/pretrained/fer_model.keras",
                                      "teacher": ["models/pretrained/fer_model.keras"]})
    (tmp_path / "runs" / "next" / "config.json").write_text(json.dumps(config.to_dict()))
    stored = json.loads((ROOT / "models" / "pretrained" / "fer_model.meta.json").read_text())["training_lineage"]
    lineage = training_lineage("runs/next", "D", root=tmp_path)
    assert lineage[:-1] == stored and len(lineage) == len(stored) + 1
    last_out = shlex.split(stored[-1])[shlex.split(stored[-1]).index("--out") + 1]
    assert f"--init-from {last_out}/model.keras" in lineage[-1]
    assert f"--teacher {last_out}/model.keras" in lineage[-1] and "models/pretrained" not in lineage[-1]


def test_lineage_follows_init_from_and_teachers_ancestors_first(tmp_path):
    from training.lineage import LineageError, training_lineage

    def run(name: str, **overrides) -> None:
        (tmp_path / "runs" / name).mkdir(parents=True)
        config = Config().with_overrides({"model": "fernet", "feature_set": "raw", **overrides})
        (tmp_path / "runs" / name / "config.json").write_text(json.dumps(config.to_dict()))

    run("a", epochs=3)
    run("b", init_from="runs/a/model.keras", learning_rate=0.02)
    run("c", init_from="runs/b/model.keras", teacher=["runs/a/model.keras", "runs/b/model.keras"])
    lineage = training_lineage("runs/c", "D", root=tmp_path)
    assert [shlex.split(c)[shlex.split(c).index("--out") + 1] for c in lineage] == ["runs/a", "runs/b", "runs/c"]
    assert "--teacher runs/a/model.keras,runs/b/model.keras" in lineage[2] and "--learning-rate 0.02" in lineage[1]
    with pytest.raises(LineageError, match="no config.json"):
        training_lineage("runs/missing", "D", root=tmp_path)
