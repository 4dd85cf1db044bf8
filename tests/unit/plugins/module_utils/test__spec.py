# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validation of the task's parameters: every refusal names the option, the value and what is allowed."""

from __future__ import annotations

import os

import pytest

from ansible_collections.netdev.tuntap.plugins.module_utils._spec import (
    ARGUMENT_SPEC, DEFAULT_REGISTRY, DEVICE_OPTIONS, MUTUALLY_EXCLUSIVE, DeviceSpec, SpecError, parse_device,
    parse_task)

REG = "/nonexistent/ntt-unit/registry.json"   # parse_task never touches it


def task(**params):
    params.setdefault("registry", REG)
    return parse_task(params)


def one(**params):
    spec = task(**params)
    assert spec.batch is False
    assert len(spec.devices) == 1
    return spec.devices[0]


def error(**params) -> str:
    with pytest.raises(SpecError) as exc:
        task(**params)
    return str(exc.value)


def batch_error(*items, **params) -> str:
    return error(devices=list(items), **params)


def assert_mentions(message, *parts):
    for part in parts:
        assert part in message, "%r not in %r" % (part, message)


# -- defaults and the happy path -------------------------------------------------

def test_defaults_single_form():
    spec = task(name="vnet%d")
    assert (spec.netns, spec.registry, spec.max_id, spec.reuse_delay, spec.prune_prefix, spec.batch) == \
        (None, REG, 99999, 3600, None, False)
    device = spec.devices[0]
    assert device == DeviceSpec(
        where="", name=None, template="vnet%d", lease=None, state="present", mode="tap", owner=None,
        group=None, multi_queue=False, vnet_hdr=False, packet_info=False, mtu=None, mac_address=None,
        bridge=None, up=True, force=False)


def test_registry_default():
    assert parse_task({"name": "tap0"}).registry == DEFAULT_REGISTRY
    assert parse_task({"name": "tap0", "registry": None}).registry == DEFAULT_REGISTRY


def test_module_style_params_with_every_key_present():
    # AnsibleModule hands over every option, unset ones as None and defaults filled in.
    params = {key: opt.get("default") for key, opt in ARGUMENT_SPEC.items()}
    params.update(name="tap0", registry=REG)
    spec = parse_task(params)
    assert spec.devices[0].name == "tap0"
    assert spec.max_id == 99999 and spec.reuse_delay == 3600


def test_module_style_params_in_batch_mode():
    params = {key: opt.get("default") for key, opt in ARGUMENT_SPEC.items()}
    item = {key: opt.get("default") for key, opt in DEVICE_OPTIONS.items()}
    params.update(registry=REG, devices=[dict(item, name="vnet%d", lease="a"), dict(item, name="tap9")])
    spec = parse_task(params)
    assert spec.batch is True
    assert [(d.template, d.name, d.lease, d.where) for d in spec.devices] == [
        ("vnet%d", None, "a", "devices[0]."), (None, "tap9", None, "devices[1].")]


@pytest.mark.parametrize("params, attr, expected", [
    (dict(name="tap0"), "name", "tap0"),
    (dict(name="tap0"), "template", None),
    (dict(name="vnet%d"), "template", "vnet%d"),
    (dict(name="vnet%d"), "name", None),
    (dict(name="tap0", mode="tun"), "mode", "tun"),
    (dict(name="tap0", mtu=9000), "mtu", 9000),
    (dict(name="tap0", mtu="1500"), "mtu", 1500),
    (dict(name="tap0", mtu=68), "mtu", 68),
    (dict(name="tap0", mtu=65535), "mtu", 65535),
    (dict(name="tap0", mac_address="52:54:00:AB:cd:0F"), "mac_address", "52:54:00:ab:cd:0f"),
    (dict(name="tap0", mac_address="52-54-00-ab-cd-0f"), "mac_address", "52:54:00:ab:cd:0f"),
    (dict(name="tap0", mac_address="02:00:00:00:00:00"), "mac_address", "02:00:00:00:00:00"),
    (dict(name="tap0", owner="root"), "owner", 0),
    (dict(name="tap0", owner="daemon"), "owner", 1),
    (dict(name="tap0", owner="1234"), "owner", 1234),
    (dict(name="tap0", owner=1234), "owner", 1234),
    (dict(name="tap0", owner=str(2 ** 32 - 2)), "owner", 2 ** 32 - 2),
    (dict(name="tap0", group="root"), "group", 0),
    (dict(name="tap0", group="4321"), "group", 4321),
    (dict(name="tap0", multi_queue="yes"), "multi_queue", True),
    (dict(name="tap0", vnet_hdr="on"), "vnet_hdr", True),
    (dict(name="tap0", packet_info="1"), "packet_info", True),
    (dict(name="tap0", up="false"), "up", False),
    (dict(name="tap0", up="No"), "up", False),
    (dict(name="tap0", force="off"), "force", False),
    (dict(name="tap0", bridge="br0"), "bridge", "br0"),
    (dict(name="tap0", bridge=""), "bridge", ""),                    # "" detaches
    (dict(name="tun0", mode="tun", bridge=""), "bridge", ""),        # detaching is fine for tun
    (dict(name="tap0", lease="web1/net0"), "lease", "web1/net0"),
    (dict(name="tap0", lease="x" * 176), "lease", "x" * 176),
    (dict(lease="web1/net0", state="absent"), "lease", "web1/net0"),
    (dict(name="vnet%d", lease="a", state="absent"), "template", "vnet%d"),
])
def test_accepted_values(params, attr, expected):
    assert getattr(one(**params), attr) == expected


@pytest.mark.parametrize("params, attr, expected", [
    (dict(max_id="12"), "max_id", 12),
    (dict(max_id=0), "max_id", 0),
    (dict(max_id=2 ** 31 - 1, name="%d"), "max_id", 2 ** 31 - 1),
    (dict(reuse_delay=0), "reuse_delay", 0),
    (dict(reuse_delay=None), "reuse_delay", 3600),
    (dict(max_id=None), "max_id", 99999),
    (dict(netns="ntt-abc"), "netns", "ntt-abc"),
])
def test_accepted_task_values(params, attr, expected):
    params.setdefault("name", "vnet%d")
    assert getattr(task(**params), attr) == expected


@pytest.mark.parametrize("spec, expected", [
    (dict(name="tap0"), "tap0"),
    (dict(name="vnet%d"), "vnet%d"),
    (dict(name="vnet%d", lease="a"), "vnet%d (lease 'a')"),
    (dict(lease="a", state="absent"), "lease 'a'"),
])
def test_label_single(spec, expected):
    assert one(**spec).label() == expected


def test_label_batch():
    spec = task(devices=[{"name": "tap0"}, {"name": "vnet%d", "lease": "k"}])
    assert [d.label() for d in spec.devices] == ["devices[0] tap0", "devices[1] vnet%d (lease 'k')"]


# -- task-level refusals ---------------------------------------------------------------

@pytest.mark.parametrize("params, parts", [
    (dict(name="tap0", colour="red"), ["colour is not an option of tap_device", "allowed:", "max_id", "devices"]),
    (dict(name="tap0", max_id="lots"), ["argument 'max_id' is of type str", "unable to convert to int", "'lots'"]),
    (dict(name="tap0", max_id=-1), ["max_id -1 is out of range", "allowed: 0 to 2147483647"]),
    (dict(name="tap0", max_id=2 ** 31), ["max_id 2147483648 is out of range", "0 to 2147483647"]),
    (dict(name="tap0", max_id=1.5), ["argument 'max_id' is of type float", "unable to convert to int", "1.5"]),
    (dict(name="tap0", reuse_delay="1h"), ["argument 'reuse_delay'", "unable to convert to int", "'1h'"]),
    (dict(name="tap0", reuse_delay=-5), ["reuse_delay -5 is out of range", "allowed: 0 to"]),
    (dict(name="tap0", netns=""), ["netns ''", "not a valid namespace name"]),
    (dict(name="tap0", netns="a/b"), ["netns 'a/b'", "no '/'"]),
    (dict(name="tap0", netns=".."), ["netns '..'", "not '.' or '..'"]),
    (dict(name="tap0", prune_prefix="x"), ["prune_prefix needs the batch form", "devices"]),
    (dict(devices=[], prune_prefix=""), ["prune_prefix must not be empty", "every lease"]),
    # Ansible reads a string as a comma-separated list, so the item is what is wrong
    (dict(devices="tap0"), ["devices[0] must be a dict of device options, got 'tap0'"]),
    (dict(devices={"name": "tap0"}), ["devices must be a list of device dicts, got {'name': 'tap0'}"]),
    (dict(devices=[{"name": "tap0"}], name="tap1"), ["devices and name are mutually exclusive"]),
    (dict(devices=[{"name": "tap0"}], lease="x"), ["devices and lease are mutually exclusive"]),
    (dict(devices=[{"name": "tap0"}], mtu=1400), ["devices and mtu are mutually exclusive"]),
    (dict(devices=[{"name": "tap0"}], state="absent"), ["devices and state are mutually exclusive"]),
    (dict(devices=[{"name": "tap0"}], mode="tun"), ["devices and mode are mutually exclusive"]),
    (dict(devices=[{"name": "tap0"}], up=False), ["devices and up are mutually exclusive"]),
    (dict(devices=[{"name": "tap0"}], force=True), ["devices and force are mutually exclusive"]),
    (dict(devices=["tap0"]), ["devices[0] must be a dict of device options", "'tap0'"]),
    (dict(devices=[{"name": "tap0"}, None]), ["devices[1] must be a dict", "None"]),
])
def test_task_level_refusals(params, parts):
    assert_mentions(error(**params), *parts)


def test_mutually_exclusive_list_for_ansible_module():
    pairs = {tuple(pair) for pair in MUTUALLY_EXCLUSIVE}
    for option in ("name", "lease", "owner", "group", "mtu", "mac_address", "bridge"):
        assert ("devices", option) in pairs
    # options with defaults are always present in module.params, so they cannot be listed
    assert ("devices", "state") not in pairs


def test_batch_with_default_valued_device_options_is_accepted():
    spec = task(devices=[{"name": "tap0"}], state="present", mode="tap", up=True, force=False)
    assert spec.batch and spec.devices[0].name == "tap0"


def test_empty_batch_is_accepted():
    spec = task(devices=[], prune_prefix="guest:")
    assert spec.devices == [] and spec.prune_prefix == "guest:" and spec.batch


# -- device-level refusals, single form and batch form (index in the option) -----------

BIG = 2 ** 32 - 1

DEVICE_REFUSALS = [
    # (item, parts the message must contain; "{w}" is the item prefix: "" or "devices[3].", and "{v}"
    # the prefix of the messages of Ansible's own argument validator: "" or "devices[3]: ")
    (dict(name="tap0", state="gone"), ["{v}value of state must be one of: present, absent, got: gone"]),
    (dict(name="tap0", mode="tup"), ["{v}value of mode must be one of: tap, tun, got: tup"]),
    (dict(name="tap0", lease=""), ["{w}lease ''", "not a valid lease", "1 to 176 printable"]),
    (dict(name="tap0", lease="x" * 177), ["{w}lease 'xxxx", "1 to 176"]),
    (dict(name="tap0", lease="a\nb"), ["{w}lease 'a\\nb'", "printable"]),
    (dict(name="tap0", lease="a\x7fb"), ["{w}lease 'a\\x7fb'", "printable"]),
    (dict(name="x" * 16), ["{w}name 'xxxxxxxxxxxxxxxx' is 16 bytes long", "1 to 15 bytes"]),
    (dict(name="tapà"), ["{w}name 'tapà'", "0xA0", "may not contain"]),
    (dict(name="a:b"), ["{w}name 'a:b'", "':'"]),
    (dict(name="."), ["{w}name '.'", "'.' and '..'"]),
    (dict(name="vnet%s"), ["{w}name 'vnet%s' is not a valid template", "exactly one '%d'"]),
    (dict(name="vnet%%d"), ["{w}name 'vnet%%d'", "exactly one '%d'"]),
    (dict(name="vnet%d%d"), ["{w}name 'vnet%d%d'", "exactly one '%d'"]),
    (dict(name="x" * 12 + "%d"), ["{w}name 'xxxxxxxxxxxx%d'", "max_id 99999", "longest max_id that fits is 999"]),
    (dict(), ["{w}name is required to create a device", "vnet%d"]),
    (dict(lease="k"), ["{w}name is required to create a device"]),
    (dict(state="absent"), ["{w}name or lease is required with state 'absent'"]),
    (dict(name="vnet%d", state="absent"), ["{w}name 'vnet%d' is a template", "give the lease"]),
    (dict(name="tun0", mode="tun", mac_address="52:54:00:00:00:01"),
     ["{w}mac_address is not allowed with mode 'tun'"]),
    (dict(name="tun0", mode="tun", bridge="br0"), ["{w}bridge 'br0' is not allowed with mode 'tun'"]),
    (dict(name="tap0", bridge="br 0"), ["{w}bridge 'br 0'", "a space"]),
    (dict(name="tap0", bridge="b" * 16), ["{w}bridge 'bbbbbbbbbbbbbbbb' is 16 bytes long"]),
    (dict(name="tap0", bridge="br%d"), ["{w}bridge 'br%d'", "'%'"]),
    (dict(name="tap0", owner="ntt-no-such-user"), ["{w}owner 'ntt-no-such-user' is not a user on this host",
                                                   "numeric uid"]),
    (dict(name="tap0", owner=str(BIG)), ["{w}owner %d is out of range" % BIG, "0 to 4294967294"]),
    (dict(name="tap0", group="ntt-no-such-group"), ["{w}group 'ntt-no-such-group' is not a group on this host",
                                                    "numeric gid"]),
    (dict(name="tap0", group=str(BIG)), ["{w}group %d is out of range" % BIG]),
    (dict(name="tap0", multi_queue="maybe"), ["{v}argument 'multi_queue'", "unable to convert to bool", "'maybe'"]),
    (dict(name="tap0", vnet_hdr=2), ["{v}argument 'vnet_hdr'", "unable to convert to bool", "'2'"]),
    (dict(name="tap0", packet_info="si"), ["{v}argument 'packet_info'", "unable to convert to bool", "'si'"]),
    (dict(name="tap0", up="upp"), ["{v}argument 'up'", "unable to convert to bool", "'upp'"]),
    (dict(name="tap0", force="please"), ["{v}argument 'force'", "unable to convert to bool", "'please'"]),
    (dict(name="tap0", mtu=67), ["{w}mtu 67 is out of range", "allowed: 68 to 65535"]),
    (dict(name="tap0", mtu=65536), ["{w}mtu 65536 is out of range", "68 to 65535"]),
    (dict(name="tap0", mtu="big"), ["{v}argument 'mtu' is of type str", "unable to convert to int", "'big'"]),
    (dict(name="tap0", mtu=1500.5), ["{v}argument 'mtu' is of type float", "unable to convert to int", "1500.5"]),
    (dict(name="tap0", mac_address="52:54:00:00:00"), ["{w}mac_address '52:54:00:00:00' is not a MAC address",
                                                       "six hex octets"]),
    (dict(name="tap0", mac_address="52:54:00-00:00:01"), ["{w}mac_address '52:54:00-00:00:01'", "six hex"]),
    (dict(name="tap0", mac_address="52:54:00:00:00:0g"), ["{w}mac_address '52:54:00:00:00:0g'"]),
    (dict(name="tap0", mac_address="525400000001"), ["{w}mac_address '525400000001'"]),
    (dict(name="tap0", mac_address="01:00:5e:00:00:01"), ["{w}mac_address '01:00:5e:00:00:01' is a multicast",
                                                          "unicast"]),
    (dict(name="tap0", mac_address="ff:ff:ff:ff:ff:ff"), ["{w}mac_address 'ff:ff:ff:ff:ff:ff' is a multicast"]),
    (dict(name="tap0", mac_address="00:00:00:00:00:00"), ["{w}mac_address '00:00:00:00:00:00' is all zeros"]),
]


@pytest.mark.parametrize("item, parts", DEVICE_REFUSALS)
def test_device_refusals_single_form(item, parts):
    assert_mentions(error(**item), *[part.replace("{w}", "").replace("{v}", "") for part in parts])


@pytest.mark.parametrize("item, parts", DEVICE_REFUSALS)
def test_device_refusals_name_the_item_in_batch_mode(item, parts):
    # the bad item is the fourth: its index appears in the option's name
    good = [{"name": "tap%d" % i} for i in range(3)]
    message = batch_error(*good, item)
    assert_mentions(message, *[part.replace("{w}", "devices[3].").replace("{v}", "devices[3]: ") for part in parts])


def test_unknown_key_in_an_item():
    message = batch_error({"name": "tap0"}, {"name": "tap1", "netns": "x"})
    # netns is task-level in batch mode: not a device option
    assert_mentions(message, "devices[1].netns is not a device option", "allowed:", "mtu", "lease")
    assert "registry" not in message.split("allowed:")[1]


def test_single_form_messages_start_with_the_option():
    assert error(name="tap0", mtu=10).startswith("mtu 10 is out of range")


def test_template_fit_uses_the_task_max_id():
    # the same template passes with a smaller max_id, in both forms
    assert one(name="x" * 12 + "%d", max_id=999).template == "x" * 12 + "%d"
    assert_mentions(error(name="x" * 12 + "%d", max_id=1000), "max_id 1000", "longest max_id that fits is 999")
    message = batch_error({"name": "x" * 13 + "%d"}, max_id=100)
    assert_mentions(message, "devices[0].name", "longest max_id that fits is 99")


def test_every_item_is_checked_before_anything():
    # a bad last item fails the whole task even when the first ones are fine
    assert "devices[2].mtu" in batch_error({"name": "a"}, {"name": "b"}, {"name": "c", "mtu": 1})


# -- duplicates in a batch -------------------------------------------------------------

@pytest.mark.parametrize("items, parts", [
    ([{"name": "tap0"}, {"name": "tap0"}], ["devices[0].name and devices[1].name are both 'tap0'"]),
    ([{"name": "vnet%d", "lease": "k"}, {"name": "tap1"}, {"name": "vnet%d", "lease": "k"}],
     ["devices[0].lease and devices[2].lease are both 'k'", "once per task"]),
    ([{"name": "tap0", "lease": "a"}, {"name": "tap0", "lease": "b"}],
     ["devices[0].name and devices[1].name are both 'tap0'"]),
    ([{"lease": "k", "state": "absent"}, {"name": "vnet%d", "lease": "k"}],
     ["devices[0].lease and devices[1].lease are both 'k'"]),
])
def test_duplicates_in_a_batch(items, parts):
    assert_mentions(batch_error(*items), *parts)


def test_same_template_twice_without_lease_is_fine():
    spec = task(devices=[{"name": "vnet%d"}, {"name": "vnet%d"}])
    assert [d.template for d in spec.devices] == ["vnet%d", "vnet%d"]


# -- parse_device directly ------------------------------------------------------------

def test_parse_device_where_prefix():
    device = parse_device({"name": "tap0", "mtu": 1400}, "devices[5].", 99999)
    assert device.where == "devices[5]."
    with pytest.raises(SpecError) as exc:
        parse_device({"name": "tap0", "mtu": 1}, "devices[5].", 99999)
    assert str(exc.value).startswith("devices[5].mtu 1 is out of range")


# -- remove_prefixes ----------------------------------------------------------------------

def test_remove_prefixes_alone_is_a_batch_of_no_items():
    spec = task(remove_prefixes=["guest_taps:db1/", "guest_taps:web2/"])
    assert spec.batch is True and spec.devices == []
    assert spec.prefixes() == [("removing", "guest_taps:db1/"), ("removing", "guest_taps:web2/")]


def test_prune_prefix_and_remove_prefixes_together():
    spec = task(devices=[{"name": "vnet%d", "lease": "g:a/0"}], prune_prefix="g:", remove_prefixes=["h:"])
    assert spec.prefixes() == [("pruning", "g:"), ("removing", "h:")]


@pytest.mark.parametrize("params, parts", [
    (dict(remove_prefixes=[""]), ["remove_prefixes[0] must not be empty", "every lease"]),
    (dict(remove_prefixes=["a/", ""]), ["remove_prefixes[1] must not be empty"]),
    (dict(devices=[{"name": "vnet%d", "lease": "g:db1/0"}], remove_prefixes=["g:db1/"]),
     ["devices[0].lease 'g:db1/0' is under remove_prefixes 'g:db1/'", "drop the item or the prefix"]),
    (dict(name="tap0", remove_prefixes=["g:"]), ["remove_prefixes needs the batch form", "instead of name"]),
])
def test_remove_prefixes_refusals(params, parts):
    assert_mentions(error(**params), *parts)


def test_an_absent_item_under_remove_prefixes_is_fine():
    spec = task(devices=[{"lease": "g:db1/0", "state": "absent"}], remove_prefixes=["g:db1/"])
    assert [d.lease for d in spec.devices] == ["g:db1/0"]


# -- NUL bytes in path options, lock_timeout -----------------------------------------------

@pytest.mark.parametrize("params, option", [
    (dict(name="tap0", registry="/var/lib/x\0y/registry.json"), "registry"),
    (dict(devices=[], prune_prefix="web\0"), "prune_prefix"),
    (dict(remove_prefixes=["a", "b\0"]), "remove_prefixes[1]"),
])
def test_a_nul_byte_in_a_path_or_prefix_is_a_clean_refusal(params, option):
    with pytest.raises(SpecError) as exc:
        parse_task(params)
    assert str(exc.value).startswith(option + " ") and "NUL byte" in str(exc.value)


def test_a_nul_byte_in_registry_is_a_failed_task_not_an_internal_error(tmp_path):
    from ansible_collections.netdev.tuntap.plugins.module_utils._engine import TapError, run
    os.chmod(tmp_path, 0o700)
    path = str(tmp_path / "a\0b" / "registry.json")
    with pytest.raises(TapError) as exc:
        run({"name": "tap0", "registry": path})
    assert "contains a NUL byte" in str(exc.value) and "internal error" not in str(exc.value), str(exc.value)


def test_lock_timeout_default_and_range():
    assert parse_task(dict(name="tap0")).lock_timeout == 60
    assert parse_task(dict(name="tap0", lock_timeout=0)).lock_timeout == 0
    for bad in (-1, 86401):
        with pytest.raises(SpecError) as exc:
            parse_task(dict(name="tap0", lock_timeout=bad))
        assert "lock_timeout %d is out of range; allowed: 0 to 86400" % bad in str(exc.value)


@pytest.mark.parametrize("params, start", [
    (dict(name="\ud800"), "name '\\ud800' is not valid UTF-8 text"),
    (dict(name="tap0", registry="/x/\ud800.json"), "registry '/x/\\ud800.json' is not valid UTF-8 text"),
    (dict(name="tap0", lease="a\udc80"), "lease 'a\\udc80' is not a valid lease"),
    (dict(name="tap0", bridge="\udfff"), "bridge '\\udfff' is not valid UTF-8 text"),
])
def test_lone_surrogates_are_clean_refusals(params, start):
    with pytest.raises(SpecError) as exc:
        parse_task(params)
    assert str(exc.value).startswith(start), str(exc.value)


# Found by the reliability suite's generated input: Ansible's int conversion raised OverflowError.
@pytest.mark.parametrize("params, start", [
    (dict(name="tap0", lock_timeout=float("inf")), "lock_timeout is inf, which is not a finite number"),
    (dict(name="tap0", max_id=float("-inf")), "max_id is -inf, which is not a finite number"),
    (dict(devices=[dict(name="tap0", mtu=float("nan"))]), "devices[0].mtu is nan, which is not a finite number"),
])
def test_infinite_numbers_are_clean_refusals(params, start):
    with pytest.raises(SpecError) as exc:
        parse_task(params)
    assert str(exc.value).startswith(start), str(exc.value)


@pytest.mark.parametrize("value", ["inf", "-Infinity", "nan", "1e400"])
def test_infinite_numbers_written_as_text_are_clean_refusals(value):
    with pytest.raises(SpecError) as exc:
        parse_task(dict(name="tap%d", max_id=value))
    assert str(exc.value).startswith("max_id is %r, which is not a finite number" % value), str(exc.value)
