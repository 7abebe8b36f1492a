import glob
import os

import pytest

from networks.families import FAMILIES, default_config, load_config, model_spec
from utils.config import ConfigError, check_values, format_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write(tmp_path, text, name="run.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_defaults_are_the_published_ones():
    config = default_config()
    assert config.version == "baseline"
    assert config.model.arch.encoder == "res_shortcut_encoder_29"
    assert config.train.G_lr == 1e-3 and config.train.total_step == 100000
    assert config.log.checkpoint_step == 10000 and config.test.checkpoint == "best_model"
    assert config.data.crop_size == 512 and config.model.trimap_channel == 3


def test_defaults_are_not_shared_between_loads(tmp_path):
    load_config(write(tmp_path, 'version = "a"\n[model]\nbatch_size = 3\n'))
    assert default_config().model.batch_size == 16


def test_override_is_recursive_and_paths_get_the_version(tmp_path):
    config = load_config(write(tmp_path, """
version = "run1"
[model.arch]
encoder = "resnet_gca_encoder_29"
[test]
alpha_path = "prediction"
"""))
    assert config.model.arch.encoder == "resnet_gca_encoder_29"
    assert config.model.arch.decoder == "res_shortcut_decoder_22"  # untouched sibling
    assert config.log.checkpoint_path == os.path.join("./checkpoints", "run1")
    assert config.log.logging_path == os.path.join("./logs/stdout", "run1")
    assert config.log.tensorboard_path == os.path.join("./logs/tensorboard", "run1")
    assert config.test.alpha_path == os.path.join("prediction", "run1")


def test_unknown_key_names_key_file_and_closest_valid_key(tmp_path):
    path = write(tmp_path, "[train]\ntotal_steps = 10\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    message = str(e.value)
    assert "train.total_steps" in message and path in message and "train.total_step" in message


def test_unknown_top_level_table(tmp_path):
    with pytest.raises(ConfigError, match="'modle'.*did you mean 'model'"):
        load_config(write(tmp_path, "[modle]\nbatch_size = 1\n"))


@pytest.mark.parametrize("text,match", [
    ("model = 3\n", "'model' must be a table"),
    ("[version]\nx = 1\n", "'version' must be a value, got a table"),
    ("[model]\narch = 'resnet'\n", "'model.arch' must be a table"),
    ("[train]\ntotal_step = 'many'\n", "'train.total_step' must be an integer"),
    ("[train]\ntotal_step = true\n", "'train.total_step' must be an integer"),
    ("[train]\nclip_grad = 1\n", "'train.clip_grad' must be bool"),
    ("[train]\nfreeze = 'encoder'\n", "'train.freeze' must be a list, got 'encoder'"),
    ("[train]\nfreeze = ['encoder', '']\n", "train.freeze must be a list of module names"),
    ("[train]\nfreeze = [1]\n", "train.freeze must be a list of module names"),
])
def test_wrong_kinds_of_value_are_errors(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        load_config(write(tmp_path, text))


def test_int_and_float_are_interchangeable(tmp_path):
    config = load_config(write(tmp_path, "[train]\nrec_weight = 1.5\nG_lr = 1\n"))
    assert config.train.rec_weight == 1.5 and config.train.G_lr == 1


@pytest.mark.parametrize("section,key,value,shown", [
    ("train", "total_step", "20.5", "20.5"),
    ("train", "total_step", "2e5", "200000.0"),
    ("train", "warmup_step", "5000.0", "5000.0"),
    ("model", "batch_size", "4.0", "4.0"),
    ("model", "trimap_channel", "3.0", "3.0"),
    ("data", "crop_size", "320.0", "320.0"),
    ("test", "gca_block", "1.5", "1.5"),
    ("log", "checkpoint_step", "1e4", "10000.0"),
])
def test_a_float_for_an_integer_key_is_refused(tmp_path, section, key, value, shown):
    path = write(tmp_path, f"[{section}]\n{key} = {value}\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value) == f"{path}: '{section}.{key}' must be an integer, got {shown}"


def test_loss_weights_are_real_valued():
    weights = {key: value for key, value in default_config().train.items() if key.endswith("_weight")}
    assert len(weights) == 6 and all(isinstance(value, float) for value in weights.values())


@pytest.mark.parametrize("version", ["../escape", "a/b", "/abs", "a\\b", "v..1", "", ".", ".."])
def test_a_version_that_is_not_a_plain_name_is_refused(tmp_path, version):
    path = write(tmp_path, f"version = '{version}'\n[test]\nalpha_path = 'prediction'\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    message = str(e.value)
    assert message.startswith(f"{path}: version must be a plain name") and repr(version) in message


@pytest.mark.parametrize("section,key,value", [
    ("data", "workers", "-1"), ("model", "batch_size", "0"), ("model", "trimap_channel", "2"),
    ("data", "crop_size", "100"), ("data", "crop_size", "0"), ("train", "total_step", "0"),
    ("train", "warmup_step", "-1"), ("train", "val_step", "0"), ("train", "max_nonfinite_steps", "0"),
    ("train", "G_lr", "0.0"), ("train", "G_lr", "-1e-4"), ("train", "beta1", "1.0"), ("train", "beta2", "-0.1"),
    ("train", "rec_weight", "-1"), ("train", "lap_weight", "-0.5"), ("train", "comp_weight", "nan"),
    ("test", "batch_size", "0"), ("test", "gca_block", "-2"), ("log", "logging_step", "0"),
    ("log", "tensorboard_step", "0"), ("log", "tensorboard_image_step", "-5"), ("log", "checkpoint_step", "0"),
    ("train", "accumulate", "0"), ("data", "own_background_prob", "1.5"), ("data", "own_background_prob", "-0.1"),
])
def test_a_value_out_of_range_is_refused(tmp_path, section, key, value):
    path = write(tmp_path, f"[{section}]\n{key} = {value}\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value).startswith(f"{path}: {section}.{key} must be ")


def test_range_messages_say_what_is_allowed(tmp_path):
    for text, expected in [("[data]\nworkers = -1\n", "data.workers must be >= 0, got -1"),
                           ("[data]\ncrop_size = 100\n", "data.crop_size must be a positive multiple of 32, got 100"),
                           ("[train]\nbeta2 = 1\n", "train.beta2 must be in [0, 1), got 1"),
                           ("[test]\ngca_block = -5\n", "test.gca_block must be -1, 0 or a positive number of "
                                                         "queries, got -5")]:
        path = write(tmp_path, text)
        with pytest.raises(ConfigError) as e:
            load_config(path)
        assert str(e.value) == f"{path}: {expected}"


def test_the_edges_of_every_range_are_accepted(tmp_path):
    config = load_config(write(tmp_path, """
version = "v-1.2_b"
[model]
batch_size = 1
trimap_channel = 1
[data]
workers = 0
crop_size = 32
own_background_prob = 1
[train]
total_step = 1
warmup_step = 0
val_step = 1
max_nonfinite_steps = 1
G_lr = 1e-9
beta1 = 0
beta2 = 0.0
rec_weight = 0.5
comp_weight = 0
accumulate = 1
freeze = ["encoder.layer1"]
[test]
batch_size = 1
gca_block = -1
[log]
logging_step = 1
"""))
    assert config.version == "v-1.2_b" and config.train.rec_weight == 0.5 and config.test.gca_block == -1
    assert config.train.freeze == ["encoder.layer1"] and config.data.own_background_prob == 1


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_published_defaults_pass_the_rules(family):
    check_values(default_config(family), "defaults", FAMILIES[family].config)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[model\n"))


def test_a_published_style_user_config_loads(tmp_path):
    config = load_config(write(tmp_path, """
# Refer to utils/config.py for definition and options.
version = "my-gca"
dist = true
[model]
batch_size = 10
imagenet_pretrain = true
imagenet_pretrain_path = "pretrain/model_best_resnet34_En_nomixup.pth"
    [model.arch]
    encoder = "resnet_gca_encoder_29"
    decoder = "res_gca_decoder_22"
[train]
total_step = 200000
warmup_step = 5000
val_step = 2000
clip_grad = true
G_lr = 4e-4
[data]
train_fg = "/home/me/Adobe/all/fg"
workers = 4
augmentation = true
[test]
checkpoint = "gca-dist"
fast_eval = true
"""))
    assert config.train.G_lr == 4e-4 and config.data.workers == 4


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "config", "*.toml"))))
def test_shipped_configs_load(path):
    config = load_config(path)
    name = os.path.splitext(os.path.basename(path))[0]
    assert config.version == name
    if config.model.family == "mmagic-dim":  # DIM: VGG16, grey / 255 trimap, the refiner from stage 2
        assert (config.model.arch.encoder, config.model.trimap_channel) == ("vgg16", 1)
        assert config.model.arch.refiner == ("" if name.endswith("stage1") else "plain_refiner")
    elif config.model.family in ("gca-matting", "mmagic"):
        gca = "baseline" not in name
        assert ("gca" in config.model.arch.encoder) == gca and ("gca" in config.model.arch.decoder) == gca
        assert config.model.trimap_channel == (1 if "dimaug" in name else 3)
    elif config.model.family in ("vitmatte", "vitmatte-hf"):  # ViTMatte: the size, the source's recipe
        suffix = "-hf" if config.model.family == "vitmatte-hf" else ""
        assert name == f"vitmatte-{config.model.arch.encoder[-1]}{suffix}" and config.model.trimap_channel == 1
    else:  # AEMatter, AIM: one network each, which the family names (and its training configs begin with)
        assert name == config.model.family or name.startswith(config.model.family + "-")
    assert format_config(config).startswith("version = ")


def test_the_five_published_configs_ship():
    names = {os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "config", "*.toml"))}
    assert {"gca-dist.toml", "gca-dist-all-data.toml", "baseline.toml",
            "gca-dimaug.toml", "baseline-dimaug.toml"} <= names


@pytest.mark.parametrize("family,text,key,readers", [
    ("gca-matting", "[test]\naim_strategy = 'resize'\n", "test.aim_strategy", '"aim"'),
    ("gca-matting", "[model.arch]\nrefiner = 'plain_refiner'\n", "model.arch.refiner", '"mmagic-dim"'),
    ("mmagic-dim", "[train]\nrec_weight = 1.0\n", "train.rec_weight", '"gca-matting", "mmagic"'),
    ("aim", "[model]\ntrimap_channel = 1\n", "model.trimap_channel",
     '"gca-matting", "mmagic", "mmagic-dim", "aematter", "vitmatte", "vitmatte-hf"'),
    ("aematter", "[test]\ngca_block = -1\n", "test.gca_block", '"gca-matting", "mmagic"'),
    ("aematter", "[model.arch]\nencoder = 'vgg16'\n", "model.arch",
     '"gca-matting", "mmagic", "mmagic-dim", "vitmatte", "vitmatte-hf"'),
])
def test_a_key_the_family_does_not_read_is_refused_with_both_names(tmp_path, family, text, key, readers):
    path = write(tmp_path, f"[model]\nfamily = '{family}'\n" + text.replace("[model]\n", ""))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value) == (f"{path}: {key!r} is not read by model.family = \"{family}\" (it is a key of {readers}); "
                            "remove it, or set model.family")


def test_each_family_has_its_own_keys_and_typed_options():
    gca, dim, aim = (model_spec(default_config(name)) for name in ("gca-matting", "mmagic-dim", "aim"))
    assert gca.options.gca_block == 0 and gca.options.loss_weights["rec_weight"] == 1.0
    assert gca.options.adam.lr == 1e-3 and gca.options.adam.betas == (0.5, 0.999)
    assert not hasattr(dim.options, "loss_weights") and not hasattr(dim.options, "gca_block")
    assert dim.options.trimap_channel == 1 and dim.options.refiner == ""
    assert (aim.options.strategy, aim.options.resize) == ("hybrid", "skimage-0.14")
    assert {"test.aim_strategy", "test.aim_resize", "train.aim_stage", "data.train_usr", "train.G_lr"} <= set(aim.values)
    assert aim.options.training.stage == "matting" and aim.options.training.adam.betas == (0.9, 0.999)
    aematter = model_spec(default_config("aematter"))
    # no encoder, no GCA blocking; its training recipe's keys, the published batch and crop
    assert dict(aematter.values) == {"model.trimap_channel": 3, "model.batch_size": 2, "train.lr_per_sample": 2.5e-5,
                                     "train.lr_epochs": 150, "data.crop_size": 1024, "data.pipeline": "aematter",
                                     "data.random_interp": True, "train.clip_grad": False}
    assert "arch" not in default_config("aematter").model and "rec_weight" not in default_config("aim").train


def test_an_unknown_family_is_named_with_the_known_ones(tmp_path):
    path = write(tmp_path, "[model]\nfamily = 'gca_matting'\n")
    with pytest.raises(ConfigError, match="model.family 'gca_matting' is not one of this project's "
                                          r"\(gca-matting, mmagic, mmagic-dim, aematter, aim"):
        load_config(path)
    with pytest.raises(ConfigError, match="'model.family' must be str"):
        load_config(write(tmp_path, "[model]\nfamily = 3\n"))


def test_the_shipped_dim_configs_set_no_loss_weight():
    for stage in (1, 2, 3):
        config = load_config(os.path.join(ROOT, "config", f"mmagic-dim-stage{stage}.toml"))
        assert not any(key.endswith("_weight") for key in config.train)
