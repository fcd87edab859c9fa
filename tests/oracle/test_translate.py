"""From scenario steps to module commands, and the steps the oracle must refuse."""

from __future__ import annotations

import pytest

from rofolio.kversion import KernelVersion
from rofolio.oracle.errors import Refusal
from rofolio.oracle.translate import kernel_series, refusals, translate
from rofolio.scenario.loader import parse

V61 = KernelVersion.parse("6.1")

HEAD = '''name = "t"
start = "running"
[machine]
mem = "8G"
'''


def scenario(steps: str, head: str = HEAD):  # type: ignore[no-untyped-def]
    return parse(head + steps)


def test_kver_gives_the_series() -> None:
    assert kernel_series("6.1.0-57-amd64").series == "6.1"


def test_pages_are_taken_first_then_each_step_names_its_slot_and_offset() -> None:
    plan = translate(scenario('''
[[steps]]
op = "set_memory_ro"
pa = "6G"
offset = 7
pages = 1
[[steps]]
op = "set_memory_rw"
pa = "6G"
pages = 512
[[steps]]
op = "write"
pa = "6G"
offset = 7
probe = true
[[steps]]
op = "write"
pa = "6G"
offset = 8
[[steps]]
op = "set_direct_map_invalid_noflush"
pa = "0x200000000"
offset = 3
'''), V61, exp=4, slot_base=2)
    assert [(c.id, c.command) for c in plan.commands] == [
        ("4.g1", "grabpa 2 0x180000000 512"),
        ("4.g2", "grabpa 3 0x200003000 1"),
        ("4.1", "ro 2 7 1"),
        ("4.2", "rw 2 0 512"),
        ("4.3", "probe 2 7"),
        ("4.4", "write 2 8"),
        ("4.5", "dminv 3 0"),
    ]
    assert plan.slots == 2
    # after every step: the direct map over its pages widened to whole 2M regions
    assert plan.commands[2].queries == ["scan 0x180000000 0x180200000"]
    assert plan.commands[-1].queries == ["scan 0x200000000 0x200200000"]
    assert plan.commands[2].line() == 'step "4.1" "ro 2 7 1" "scan 0x180000000 0x180200000"'
    assert plan.script().startswith('echo "=== EXP 4 t"\nstep "4.g1" "grabpa 2 0x180000000 512"')


def test_ranges_closer_than_4m_are_taken_together() -> None:
    plan = translate(scenario('''
[[steps]]
op = "set_memory_ro"
pa = "0x200000000"
pages = 1
[[steps]]
op = "set_memory_ro"
pa = "0x200300000"
pages = 1
[[steps]]
op = "set_memory_ro"
pa = "0x201000000"
pages = 1
'''), V61)
    assert [(g.pa, g.pages) for g in plan.grabs] == [(0x200000000, 0x301), (0x201000000, 1)]
    assert [c.command for c in plan.commands if c.kind != "grab"] == ["ro 0 0 1", "ro 0 768 1", "ro 1 0 1"]


def test_a_vmap_gets_its_own_slot_and_steps_through_it_report_its_pages() -> None:
    plan = translate(scenario('''
[[steps]]
op = "vmap"
pa = "0x200000000"
offset = 5
pages = 3
as = "buf"
[[steps]]
op = "set_memory_ro"
mapping = "buf"
offset = 1
pages = 2
[[steps]]
op = "write"
mapping = "buf"
offset = 2
'''), V61)
    cmds = [c for c in plan.commands if c.kind != "grab"]
    assert [c.command for c in cmds] == ["vmap 1 0 0 3", "ro 1 1 2", "write 1 2"]
    assert cmds[1].queries == ["scan 0x200000000 0x200200000", "level 1 1", "level 1 2"]
    assert cmds[1].target_pa == 0x200006000 and cmds[1].mapping == "buf"


def test_kernel_image_pages_are_not_taken_and_only_harmless_changes_run_there() -> None:
    plan = translate(scenario('''
[[steps]]
op = "set_memory_rw"
pa = "0x2000000"
offset = 4
pages = 1
[[steps]]
op = "write"
pa = "0x2004000"
probe = true
'''), V61)
    assert plan.grabs == []
    assert [c.command for c in plan.commands] == ["pa rw 0x2004000 1", "probepa 0x2004000"]
    # the image is also mapped by the high kernel map: that alias is scanned too
    assert plan.commands[0].queries == ["scan 0x2000000 0x2200000", "scanhigh 0x2000000 0x2200000"]


def test_a_snapshot_is_a_full_scan_against_a_baseline_taken_at_the_start() -> None:
    plan = translate(scenario('''
[[steps]]
op = "set_memory_ro"
pa = "0x200000000"
pages = 1
[[steps]]
op = "snapshot"
'''), V61)
    assert [(c.id, c.kind, c.command) for c in plan.commands] == [
        ("1.g1", "grab", "grabpa 0 0x200000000 1"), ("1.base", "baseline", "scan"),
        ("1.1", "set_memory", "ro 0 0 1"), ("1.2", "snapshot", "scan")]


def test_direct_map_virtual_addresses_become_physical() -> None:
    plan = translate(scenario('''
[[steps]]
op = "set_memory_ro"
va = "0xffff888200000000"
pages = 1
'''), V61)
    assert plan.grabs[0].pa == 0x200000000


@pytest.mark.parametrize(("steps", "head", "message"), [
    ('[[steps]]\nop = "set_memory_ro"\npa = "6G"\npages = 1\n', HEAD.replace("running", "initcalls"),
     'start = "initcalls"'),
    ('[[steps]]\nop = "phase"\nto = "running"\n', HEAD.replace("running", "initcalls"), "remove the phase step"),
    ('[[steps]]\nop = "pgtable_alloc_fail"\n', HEAD, "cannot be made to fail"),
    ('[[steps]]\nop = "set_memory_rox"\npa = "6G"\npages = 1\n', HEAD, "set_memory_rox() exists from v6.2"),
    ('[[steps]]\nop = "set_memory_ro"\nva = "0xffffffff81000000"\npages = 1\n', HEAD, "outside the direct map"),
    ('[[steps]]\nop = "set_memory_ro"\npa = "0x2000000"\npages = 1\n', HEAD, "belongs to the kernel image"),
    ('[[steps]]\nop = "set_memory_np"\npa = "0x1000000"\npages = 1\n', HEAD, "belongs to the kernel image"),
    ('[[steps]]\nop = "write"\npa = "0x3000000"\n', HEAD, "would corrupt the running kernel"),
    ('[[steps]]\nop = "set_direct_map_invalid_noflush"\npa = "0x2000000"\n', HEAD, "belongs to the kernel image"),
    ('[[steps]]\nop = "set_memory_ro"\npa = "6G"\npages = 1\n', HEAD + "debug_pagealloc = true\n",
     "debug_pagealloc=on"),
    ('[[steps]]\nop = "set_memory_ro"\npa = "6G"\npages = 1\n', HEAD + "kfence = true\n", "KFENCE"),
    ('[[steps]]\nop = "set_memory_ro"\npa = "6G"\npages = 1\n', HEAD + "paging = 5\n", "4-level paging"),
])
def test_what_cannot_run_on_a_real_kernel_is_refused(steps: str, head: str, message: str) -> None:
    sc = scenario(steps, head)
    with pytest.raises(Refusal) as err:
        translate(sc, V61)
    assert message in err.value.message
    assert "rofolio run" in err.value.hint


def test_every_problem_is_listed_not_just_the_first() -> None:
    sc = scenario('''
[[steps]]
op = "pgtable_alloc_fail"
[[steps]]
op = "set_memory_ro"
pa = "6G"
pages = 1
[[steps]]
op = "set_memory_rox"
pa = "6G"
pages = 1
''')
    problems = refusals(sc, V61)
    assert len(problems) == 2
    assert problems[0].startswith("step 1 (pgtable_alloc_fail)") and problems[1].startswith("step 3 (set_memory_rox)")
    assert refusals(sc, KernelVersion.parse("6.6")) == problems[:1]  # set_memory_rox exists from v6.2


def test_a_valid_scenario_has_no_refusals() -> None:
    assert refusals(scenario('[[steps]]\nop = "set_memory_np"\npa = "6G"\npages = 3\n'), V61) == []


def test_ops_without_a_module_command_are_refused() -> None:
    from rofolio.scenario import schema

    if not hasattr(schema, "HugepageInit"):
        pytest.skip("this scenario schema has no op without a module command besides the ones tested above")
    sc = scenario('[[steps]]\nop = "hugepage_init"\n')
    (problem,) = refusals(sc, V61)
    assert "no module command for 'hugepage_init'" in problem
