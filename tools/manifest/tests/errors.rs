//! One negative test per manifest error (after the seL4 microkit tool),
//! each asserting the complete list of messages: one mistake, one error.

use tessera_manifest::{Party, parse};

const SUPERVISOR: &str = "[tasks.root]\nsupervisor = true\npriority = 31\nmemory = \"64KiB\"\nstack = \"16KiB\"\n";

/// A system with the supervisor and `tasks`.
fn system(tasks: &str) -> String {
    format!("[system]\nname = \"test\"\n\n{SUPERVISOR}\n{tasks}")
}

/// A task table with valid sizes and `extra` lines.
fn task(name: &str, priority: u8, extra: &str) -> String {
    format!("[tasks.{name}]\npriority = {priority}\nmemory = \"64KiB\"\nstack = \"16KiB\"\n{extra}\n")
}

fn errors(text: &str) -> Vec<String> {
    match parse(text, "test.toml") {
        Ok(m) => panic!("accepted:\n{text}\n{m:#?}"),
        Err(e) => e.messages(),
    }
}

#[track_caller]
fn assert_errors(text: &str, expected: &[&str]) {
    assert_eq!(errors(text), expected, "for:\n{text}");
}

// ---- TOML-level mistakes: one error with a line and column.

#[test]
fn toml_syntax_error() {
    assert_errors(
        "[system]\nname = \"test\"\n[tasks.a\n",
        &["test.toml:3:9: unclosed table, expected `]` (in `[tasks.a`)"],
    );
}

#[test]
fn unknown_task_field() {
    let text = system(&task("a", 1, "prio = 3"));
    assert_errors(
        &text,
        &["test.toml:14:1: unknown field `prio`, expected one of `binary`, `priority`, `memory`, `stack`, \
           `supervisor`, `restart`, `serves`, `uses`, `io_ports`, `interrupts`, `untyped`, `objects`, `kill_every_ms`, \
           `kill_limit`, `cpu` (in `prio = 3`)"],
    );
}

#[test]
fn unknown_top_level_table() {
    assert_errors(
        "[system]\nname = \"test\"\n[task.a]\npriority = 1\n",
        &[
            "test.toml:3:2: unknown field `task`, expected one of `system`, `tasks`, `partitions`, `scheduler`, `connections` (in `[task.a]`)",
        ],
    );
}

#[test]
fn unknown_io_ports_field() {
    let text = system(&task("a", 1, "io_ports = [{ base = 0x60, size = 1 }]"));
    assert_errors(
        &text,
        &[
            "test.toml:14:28: unknown field `size`, expected `base` or `count` (in `io_ports = [{ base = 0x60, size = 1 }]`)",
        ],
    );
}

#[test]
fn missing_required_field() {
    let text = system("[tasks.a]\npriority = 1\nmemory = 4096\n");
    assert_errors(&text, &["test.toml:10:1: missing field `stack` (in `[tasks.a]`)"]);
}

#[test]
fn missing_system_table() {
    assert_errors(SUPERVISOR, &["test.toml: missing field `system`"]);
}

#[test]
fn wrong_type() {
    let text = system(&task("a", 1, "uses = \"console\""));
    assert_errors(
        &text,
        &["test.toml:14:8: invalid type: string \"console\", expected a sequence (in `uses = \"console\"`)"],
    );
}

#[test]
fn duplicate_task_name() {
    let text = system(&format!("{}{}", task("a", 1, ""), task("a", 2, "")));
    assert_errors(
        &text,
        &["test.toml:15:8: duplicate key `a` (each task and key may be declared once) (in `[tasks.a]`)"],
    );
}

// ---- Names.

#[test]
fn invalid_task_name() {
    let text = system(&task("\"Vid!\"", 1, ""));
    assert_errors(
        &text,
        &[
            "task \"Vid!\": name: invalid task name (use 1 to 32 lowercase letters, digits, '-' or '_', starting with a letter)",
        ],
    );
}

#[test]
fn task_name_too_long() {
    let text = system(&task(&"a".repeat(33), 1, ""));
    assert_eq!(
        errors(&text),
        [format!(
            "task \"{}\": name: invalid task name (use 1 to 32 lowercase letters, digits, '-' or '_', starting with a letter)",
            "a".repeat(33)
        )]
    );
}

#[test]
fn invalid_system_name() {
    let text = system("").replace("name = \"test\"", "name = \"\"");
    assert_errors(
        &text,
        &[
            "system: name: invalid system name \"\" (use 1 to 32 lowercase letters, digits, '-' or '_', starting with a letter)",
        ],
    );
}

#[test]
fn invalid_binary_name() {
    let text = system(&task("a", 1, "binary = \"../a\""));
    assert_errors(
        &text,
        &["task \"a\": binary: invalid binary name \"../a\" (use 1 to 32 letters, digits, '.', '-' or '_', \
           not starting with '.'; \"manifest\" is reserved)"],
    );
}

#[test]
fn reserved_binary_name() {
    let text = system(&task("a", 1, "binary = \"manifest\""));
    assert_errors(
        &text,
        &["task \"a\": binary: invalid binary name \"manifest\" (use 1 to 32 letters, digits, '.', '-' or '_', \
           not starting with '.'; \"manifest\" is reserved)"],
    );
}

#[test]
fn invalid_endpoint_name() {
    let text = system(&task("a", 1, "serves = [\"Console\"]"));
    assert_errors(
        &text,
        &[
            "task \"a\": serves: invalid endpoint name \"Console\" (use 1 to 32 lowercase letters, digits, '-' or '_', starting with a letter)",
        ],
    );
}

// ---- Endpoints and capabilities.

#[test]
fn capability_to_nowhere_suggests_the_closest_endpoint() {
    let text =
        system(&format!("{}{}", task("console", 30, "serves = [\"console\"]"), task("vid", 20, "uses = [\"consol\"]")));
    assert_errors(&text, &["task \"vid\": uses: no task serves endpoint \"consol\" (did you mean \"console\"?)"]);
}

#[test]
fn capability_to_nowhere_without_a_close_name() {
    let text = system(&format!(
        "{}{}",
        task("console", 30, "serves = [\"console\"]"),
        task("vid", 20, "uses = [\"network\"]")
    ));
    assert_errors(&text, &["task \"vid\": uses: no task serves endpoint \"network\""]);
}

#[test]
fn endpoint_served_by_two_tasks() {
    let text = system(&format!("{}{}", task("a", 3, "serves = [\"log\"]"), task("b", 2, "serves = [\"log\"]")));
    assert_errors(&text, &["task \"b\": serves: endpoint \"log\" is already served by task \"a\""]);
}

#[test]
fn endpoint_listed_twice() {
    let text = system(&format!(
        "{}{}",
        task("a", 3, "serves = [\"log\", \"log\"]"),
        task("b", 2, "uses = [\"log\", \"log\"]")
    ));
    assert_errors(
        &text,
        &["task \"a\": serves: endpoint \"log\" is listed twice", "task \"b\": uses: endpoint \"log\" is listed twice"],
    );
}

#[test]
fn task_using_its_own_endpoint() {
    let text = system(&task("a", 3, "serves = [\"log\"]\nuses = [\"log\"]"));
    assert_errors(
        &text,
        &["task \"a\": uses: endpoint \"log\" is served by this task itself (a task cannot call itself)"],
    );
}

#[test]
fn calls_must_go_to_a_higher_priority() {
    let text = system(&format!("{}{}", task("a", 5, "serves = [\"log\"]"), task("b", 5, "uses = [\"log\"]")));
    assert_errors(
        &text,
        &["task \"b\": uses: endpoint \"log\" is served by task \"a\" at priority 5, not higher than this task's 5 \
           (calls must go to a higher priority)"],
    );
}

// ---- Devices.

#[test]
fn io_port_overlap_between_tasks_names_both() {
    let text = system(&format!(
        "{}{}",
        task("console", 2, "io_ports = [{ base = 0x3f8, count = 8 }]"),
        task("uart", 1, "io_ports = [{ base = 0x3fc, count = 8 }]")
    ));
    assert_errors(&text, &["task \"uart\": io_ports: 0x3fc..=0x403 overlaps 0x3f8..=0x3ff of task \"console\""]);
}

#[test]
fn io_port_overlap_within_a_task() {
    let text = system(&task("a", 1, "io_ports = [{ base = 0x60, count = 5 }, { base = 0x64, count = 1 }]"));
    assert_errors(&text, &["task \"a\": io_ports: 0x64..=0x64 overlaps 0x60..=0x64 listed before it"]);
}

#[test]
fn io_port_range_wrapping_past_0xffff() {
    let text =
        system(&task("a", 1, "io_ports = [{ base = 0xfff8, count = 16 }, { base = 1, count = 0x7fffffffffffffff }]"));
    assert_errors(
        &text,
        &[
            "task \"a\": io_ports: 0x1 + 9223372036854775807 runs past port 0xffff",
            "task \"a\": io_ports: 0xfff8 + 16 runs past port 0xffff",
        ],
    );
}

#[test]
fn io_port_range_of_count_zero() {
    let text = system(&task("a", 1, "io_ports = [{ base = 0x3f8, count = 0 }]"));
    assert_errors(&text, &["task \"a\": io_ports: range at 0x3f8 has count 0 (at least 1)"]);
}

#[test]
fn io_port_base_out_of_range() {
    let text = system(&task("a", 1, "io_ports = [{ base = 0x10000, count = 1 }]"));
    assert_errors(&text, &["task \"a\": io_ports: base 0x10000 is not an I/O port (0x0..=0xffff)"]);
}

#[test]
fn interrupt_claimed_by_two_tasks() {
    let text = system(&format!("{}{}", task("a", 2, "interrupts = [4]"), task("b", 1, "interrupts = [3, 4]")));
    assert_errors(&text, &["task \"b\": interrupts: GSI 4 is also claimed by task \"a\""]);
}

#[test]
fn interrupt_listed_twice() {
    let text = system(&task("a", 1, "interrupts = [4, 4]"));
    assert_errors(&text, &["task \"a\": interrupts: GSI 4 is listed twice"]);
}

#[test]
fn interrupt_out_of_range() {
    let text = system(&task("a", 1, "interrupts = [-1, 31, 32]"));
    assert_errors(
        &text,
        &[
            "task \"a\": interrupts: -1 is not an interrupt line the kernel routes (GSI 0..=31)",
            "task \"a\": interrupts: 32 is not an interrupt line the kernel routes (GSI 0..=31)",
        ],
    );
}

// ---- Priorities and sizes.

#[test]
fn priority_out_of_range() {
    let text = system(&format!("{}{}", task("a", 32, ""), "[tasks.b]\npriority = -1\nmemory = 4096\nstack = 4096\n"));
    assert_errors(
        &text,
        &[
            "task \"a\": priority: 32 is out of range (0..=31, higher runs first)",
            "task \"b\": priority: -1 is out of range (0..=31, higher runs first)",
        ],
    );
}

#[test]
fn memory_and_stack_zero() {
    let text = system("[tasks.a]\npriority = 1\nmemory = 0\nstack = \"0KiB\"\n");
    assert_errors(&text, &["task \"a\": memory: must not be zero", "task \"a\": stack: must not be zero"]);
}

#[test]
fn sizes_not_page_multiples() {
    let text = system("[tasks.a]\npriority = 1\nmemory = \"65KiB\"\nstack = 100\n");
    assert_errors(
        &text,
        &[
            "task \"a\": memory: 66560 bytes is not a multiple of the page size (4096 bytes)",
            "task \"a\": stack: 100 bytes is not a multiple of the page size (4096 bytes)",
        ],
    );
}

#[test]
fn memory_too_large() {
    let text = system("[tasks.a]\npriority = 1\nmemory = \"2GiB\"\nstack = \"16KiB\"\n");
    assert_errors(&text, &["task \"a\": memory: 2048 MiB is too large (at most 1024 MiB)"]);
}

#[test]
fn size_overflowing_u64() {
    let text = system("[tasks.a]\npriority = 1\nmemory = \"99999999999999GiB\"\nstack = -4096\n");
    assert_errors(
        &text,
        &[
            "task \"a\": memory: \"99999999999999GiB\" is not a size (write an integer number of bytes, \
             or a number with KiB, MiB or GiB such as \"64KiB\")",
            "task \"a\": stack: -4096 is not a size in bytes",
        ],
    );
}

#[test]
fn size_with_an_unknown_unit() {
    let text = system("[tasks.a]\npriority = 1\nmemory = \"64KB\"\nstack = \"16KiB\"\n");
    assert_errors(
        &text,
        &["task \"a\": memory: \"64KB\" is not a size (write an integer number of bytes, \
           or a number with KiB, MiB or GiB such as \"64KiB\")"],
    );
}

#[test]
fn stack_larger_than_memory() {
    let text = system("[tasks.a]\npriority = 1\nmemory = \"16KiB\"\nstack = \"64KiB\"\n");
    assert_errors(&text, &["task \"a\": stack: 64 KiB is larger than memory (16 KiB)"]);
}

// ---- Supervisor and restart.

#[test]
fn no_supervisor() {
    let text = format!("[system]\nname = \"test\"\n{}", task("a", 1, ""));
    assert_errors(
        &text,
        &["system: supervisor: no task has supervisor = true (exactly one task, the root task, must)"],
    );
}

#[test]
fn two_supervisors() {
    let text = system(&task("b", 1, "supervisor = true"));
    assert_errors(&text, &["system: supervisor: tasks \"root\", \"b\" all have supervisor = true (exactly one may)"]);
}

#[test]
fn task_above_the_supervisor() {
    let text = system(&task("a", 20, "")).replace("priority = 31", "priority = 10");
    assert_errors(
        &text,
        &["task \"a\": priority: 20 is above the supervisor's 10 (the supervisor makes every task's scheduling \
           context and can give none a priority above its own)"],
    );
}

#[test]
fn supervisor_with_restart() {
    let text = system("").replace("supervisor = true", "supervisor = true\nrestart = \"never\"");
    assert_errors(
        &text,
        &["task \"root\": restart: the supervisor has no restart policy (the kernel starts it once; remove restart)"],
    );
}

#[test]
fn unknown_restart_policy() {
    let text = system(&task("a", 1, "restart = \"sometimes\""));
    assert_errors(&text, &["task \"a\": restart: unknown policy \"sometimes\" (expected \"always\" or \"never\")"]);
}

// ---- The system as a whole.

#[test]
fn empty_system() {
    assert_errors(
        "[system]\nname = \"test\"\n",
        &[
            "system: tasks: the system has no tasks (declare at least the supervisor: [tasks.NAME] with supervisor = true)",
        ],
    );
}

#[test]
fn too_many_tasks() {
    let tasks: String = (0..16).map(|i| task(&format!("t{i}"), 1, "")).collect();
    assert_errors(&system(&tasks), &["system: tasks: 17 tasks, at most 16"]);
}

#[test]
fn too_many_capabilities_in_one_task() {
    let servers: String = (0..9).map(|i| task(&format!("s{i}"), 30, &format!("serves = [\"e{i}\"]"))).collect();
    let uses: Vec<String> = (0..9).map(|i| format!("\"e{i}\"")).collect();
    let text = system(&format!(
        "{servers}{}",
        task(
            "client",
            1,
            &format!(
                "uses = [{}]\nserves = [\"a\", \"b\", \"c\", \"d\", \"e\"]\ninterrupts = [0, 1, 2, 3, 4, 5, 6, 7, 8]\nio_ports = [{}]",
                uses.join(", "),
                (0..5).map(|i| format!("{{ base = {i}, count = 1 }}")).collect::<Vec<_>>().join(", ")
            )
        )
    ));
    assert_errors(
        &text,
        &[
            "task \"client\": interrupts: 9 lines, at most 8",
            "task \"client\": io_ports: 5 ranges, at most 4",
            "task \"client\": serves: 5 endpoints, at most 4",
            "task \"client\": uses: 9 endpoints, at most 8",
        ],
    );
}

#[test]
fn too_many_endpoints() {
    let serves: Vec<String> = (0..4).map(|e| format!("\"e{e}\"")).collect();
    let tasks: String = (0..9)
        .map(|i| {
            task(&format!("t{i}"), 1, &format!("serves = [{}]", serves.join(", ").replace('e', &format!("t{i}e"))))
        })
        .collect();
    assert_errors(&system(&tasks), &["system: endpoints: 36 endpoints, at most 32"]);
}

// ---- Collection and reporting.

#[test]
fn every_mistake_is_reported_sorted_and_numbered() {
    let text = system(&format!(
        "{}{}",
        task("vid", 1, "uses = [\"consol\"]\nrestart = \"maybe\""),
        "[tasks.console]\npriority = 40\nmemory = 4096\nstack = 8192\nserves = [\"console\"]\n"
    ));
    let errors = parse(&text, "test.toml").unwrap_err();
    assert_eq!(
        errors.to_string(),
        "error 1/4: task \"console\": priority: 40 is out of range (0..=31, higher runs first)\n\
         error 2/4: task \"console\": stack: 8 KiB is larger than memory (4 KiB)\n\
         error 3/4: task \"vid\": restart: unknown policy \"maybe\" (expected \"always\" or \"never\")\n\
         error 4/4: task \"vid\": uses: no task serves endpoint \"consol\" (did you mean \"console\"?)\n"
    );
}

// ---- Untyped quotas.

#[test]
fn untyped_not_page_multiple() {
    let text = system("[tasks.a]\npriority = 1\nmemory = \"64KiB\"\nstack = \"16KiB\"\nuntyped = 5000\n");
    assert_errors(&text, &["task \"a\": untyped: 5000 bytes is not a multiple of the page size (4096 bytes)"]);
}

#[test]
fn untyped_zero_or_too_large() {
    let text = system("[tasks.a]\npriority = 1\nmemory = \"64KiB\"\nstack = \"16KiB\"\nuntyped = 0\n");
    assert_errors(&text, &["task \"a\": untyped: must not be zero (leave it out instead)"]);
    let text = system("[tasks.a]\npriority = 1\nmemory = \"64KiB\"\nstack = \"16KiB\"\nuntyped = \"32GiB\"\n");
    assert_errors(&text, &["task \"a\": untyped: 32768 MiB is too large (at most 16384 MiB)"]);
}

#[test]
fn supervisor_with_untyped() {
    let text = "[system]\nname = \"test\"\n\n[tasks.root]\nsupervisor = true\npriority = 31\nmemory = \"64KiB\"\nstack = \"16KiB\"\nuntyped = \"1MiB\"\n";
    assert_errors(text, &["task \"root\": untyped: the supervisor already holds all untyped memory"]);
}

// ---- CPU placement.

#[test]
fn cpu_is_given_as_written_or_the_boot_cpu() {
    let text = system(&format!("{}{}", task("a", 1, "cpu = 15"), task("b", 1, "")));
    let m = parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    let cpus: Vec<(&str, u8)> = m.tasks.iter().map(|t| (t.name.as_str(), t.cpu)).collect();
    assert_eq!(cpus, [("root", 0), ("a", 15), ("b", 0)]);
}

#[test]
fn cpu_out_of_range() {
    for (cpu, value) in [("16", 16), ("-1", -1), ("256", 256)] {
        let text = system(&task("a", 1, &format!("cpu = {cpu}")));
        let message = format!("task \"a\": cpu: {value} is out of range (0..=15, 0 is the boot CPU)");
        assert_errors(&text, &[&message]);
    }
}

#[test]
fn cpu_that_is_not_an_integer() {
    let text = system(&task("a", 1, "cpu = \"1\""));
    assert_errors(&text, &["test.toml:14:7: invalid type: string \"1\", expected i64 (in `cpu = \"1\"`)"]);
}

#[test]
fn supervisor_with_cpu() {
    let text = SUPERVISOR.replace("priority = 31", "priority = 31\ncpu = 1");
    let text = format!("[system]\nname = \"test\"\n\n{text}");
    assert_errors(&text, &["task \"root\": cpu: the kernel starts the supervisor on the boot CPU (remove cpu)"]);
    // Even as 0: the key has no meaning there.
    let text = text.replace("cpu = 1", "cpu = 0");
    assert_errors(&text, &["task \"root\": cpu: the kernel starts the supervisor on the boot CPU (remove cpu)"]);
}

// ---- Objects quotas (kernel-table entries).

/// A task with 1 MiB of untyped memory and `objects`.
fn maker(objects: &str) -> String {
    task("a", 1, &format!("untyped = \"1MiB\"\nobjects = {objects}"))
}

#[test]
fn objects_are_given_as_written_or_by_default() {
    use abi::{Entries, EntryKind};
    let m = parse(&system(&maker("{ threads = 2, memory_objects = 5 }")), "t.toml").unwrap_or_else(|e| panic!("{e}"));
    let a = m.tasks.iter().find(|t| t.name == "a").unwrap();
    assert_eq!(a.objects, Entries::NONE.with(EntryKind::Thread, 2).with(EntryKind::Memory, 5));
    // No `objects`: what the VID's demo partition takes; none without untyped.
    let m = parse(&system(&task("a", 1, "untyped = \"1MiB\"")), "t.toml").unwrap();
    assert_eq!(m.tasks[1].objects, sysimage::objects::default_objects(false));
    assert_eq!(m.tasks[0].objects, Entries::NONE);
    // A VID of partitions: its exit endpoint, a notification, a scheduling
    // context per VP and a memory object per partition (the RAM beneath
    // its overlay pages); the partition manager: what its
    // partitions take, on top of its own.
    let m = parse(
        &with_vid(&partition("linux", "vcpus = 3"))
            .replace("[tasks.pm]", "[tasks.pm]\nuntyped = \"64KiB\"\nobjects = { endpoints = 1 }"),
        "t.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let of = |name: &str| m.tasks.iter().find(|t| t.name == name).unwrap().objects;
    let vid = sysimage::objects::default_objects(true).with(EntryKind::SchedContext, 3);
    assert_eq!(of("vid"), vid.with(EntryKind::Memory, 1));
    let journal = sysimage::objects::JOURNAL;
    assert_eq!(of("pm"), sysimage::objects::partition(3).with(EntryKind::Endpoint, 1).checked_add(&journal).unwrap());
}

#[test]
fn objects_of_an_unknown_kind() {
    assert_errors(
        &system(&maker("{ thread = 2 }")),
        &["task \"a\": objects: unknown kind \"thread\" (did you mean \"threads\"?) (known: tasks, threads, \
           endpoints, notifications, sched_contexts, partitions, vps, memory_objects, untyped_pools)"],
    );
}

#[test]
fn objects_out_of_range() {
    assert_errors(
        &system(&maker("{ vps = 17, endpoints = -1 }")),
        &[
            "task \"a\": objects: endpoints = -1 is out of range (0..=64, the kernel's table)",
            "task \"a\": objects: vps = 17 is out of range (0..=16, the kernel's table)",
        ],
    );
}

#[test]
fn objects_without_untyped() {
    assert_errors(
        &system(&task("a", 1, "objects = { threads = 1 }")),
        &["task \"a\": objects: the task has no untyped memory to make them from (add untyped)"],
    );
}

#[test]
fn supervisor_with_objects() {
    let text = "[system]\nname = \"test\"\n\n[tasks.root]\nsupervisor = true\npriority = 31\nmemory = \"64KiB\"\nstack = \"16KiB\"\nobjects = { threads = 1 }\n";
    assert_errors(text, &["task \"root\": objects: the supervisor already holds every kernel-table entry"]);
}

#[test]
fn objects_beyond_a_kernel_table() {
    // 48 threads in all: the kernel's 1 for the supervisor, and 1 for each task it starts.
    let fits = format!("{}{}", maker("{ threads = 45 }"), task("b", 2, ""));
    assert!(parse(&system(&fits), "t.toml").is_ok());
    let text = system(&format!(
        "{}{}",
        maker("{ threads = 40, untyped_pools = 1 }"),
        task("b", 2, "untyped = \"1MiB\"\nobjects = { threads = 6, untyped_pools = 14 }")
    ));
    assert_errors(
        &text,
        &[
            "system: objects: 18 untyped_pools are more than the kernel's table of 16 (the kernel and the supervisor \
             take 3 for the tasks it starts; quotas: b 14, a 1)",
            "system: objects: 49 threads are more than the kernel's table of 48 (the kernel and the supervisor take 3 \
             for the tasks it starts; quotas: b 6, a 40)",
        ],
    );
}

#[test]
fn partitions_with_more_vps_than_the_kernel_has() {
    let text =
        with_vid(&format!("{}{}", partition("a", "vcpus = 16"), partition("b", "vcpus = 1").replace("64MiB", "2MiB")));
    assert_errors(
        &text,
        &["system: objects: 17 vps are more than the kernel's table of 16 (the kernel and the supervisor take 0 for \
           the tasks it starts; quotas: pm 17)"],
    );
}

// ---- Partitions.

/// A system with a partition manager, a VID task using it, and `partitions`.
fn with_vid(partitions: &str) -> String {
    system(&format!("{}{}\n{partitions}", manager(""), task("vid", 10, USES_MANAGER)))
}

/// A VID's lines: its untyped quota and its use of the partition manager.
const USES_MANAGER: &str = "untyped = \"64KiB\"\nuses = [\"partition-manager\"]";

/// The partition manager's task, with `extra` lines.
fn manager(extra: &str) -> String {
    task("pm", 20, &format!("serves = [\"partition-manager\"]\n{extra}"))
}

fn partition(name: &str, extra: &str) -> String {
    format!("[partitions.{name}]\nimage = \"bzImage\"\nmemory = \"64MiB\"\nvid = \"vid\"\n{extra}\n")
}

/// `partitions` with VID `vid`, and `vid2` and `vid3` if they run any.
fn with_vids(partitions: &str) -> String {
    let runs = |v: &&str| *v == "vid" || partitions.contains(&format!("vid = \"{v}\""));
    let vids: String = ["vid", "vid2", "vid3"].into_iter().filter(runs).map(|v| task(v, 10, USES_MANAGER)).collect();
    system(&format!("{}{vids}\n{partitions}", manager("")))
}

/// Partition `i` of `count`, given to the VIDs of [`with_vids`] four by
/// four (the most one VID runs).
fn spread(i: usize, extra: &str) -> String {
    let vid = ["vid", "vid2", "vid3"][i / sysimage::manifest::MAX_PARTITIONS_PER_VID];
    partition(&format!("p{i}"), extra).replace("vid = \"vid\"", &format!("vid = \"{vid}\""))
}

#[test]
fn a_valid_partition_is_accepted() {
    let m = parse(&with_vid(&partition("linux", "vcpus = 2\nmodules = [\"initrd\"]\ncmdline = \"quiet\"")), "t.toml")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.partitions.len(), 1);
    let p = &m.partitions[0];
    assert_eq!((p.name.as_str(), p.memory, p.vcpus, m.tasks[p.vid].name.as_str()), ("linux", 64 << 20, 2, "vid"));
    assert_eq!((p.image.to_str(), p.cmdline.as_str()), (Some("bzImage"), "quiet"));
    // Partition names are their own namespace: one may share a task's name.
    assert!(parse(&with_vid(&partition("vid", "")), "t.toml").is_ok());
}

#[test]
fn unknown_partition_field() {
    let text = with_vid(&partition("linux", "ram = 4"));
    let messages = errors(&text);
    assert_eq!(messages.len(), 1);
    assert!(messages[0].contains("unknown field `ram`"), "{messages:?}");
}

#[test]
fn partition_without_an_image() {
    let text = with_vid("[partitions.linux]\nmemory = \"64MiB\"\nvid = \"vid\"\n");
    assert_errors(&text, &["test.toml:23:1: missing field `image` (in `[partitions.linux]`)"]);
}

#[test]
fn partition_with_an_empty_image() {
    let text = with_vid(&partition("linux", "").replace("\"bzImage\"", "\"\""));
    assert_errors(&text, &["partition \"linux\": image: must name the guest kernel file"]);
}

#[test]
fn invalid_partition_name() {
    let text = with_vid(&partition("\"Linux\"", ""));
    assert_errors(
        &text,
        &["partition \"Linux\": name: invalid partition name (use 1 to 32 lowercase letters, digits, '-' or '_', \
           starting with a letter)"],
    );
}

#[test]
fn partition_run_by_an_unknown_task() {
    let text = with_vid(&partition("linux", "").replace("vid = \"vid\"", "vid = \"vdi\""));
    assert_errors(&text, &["partition \"linux\": vid: no task \"vdi\" (did you mean \"vid\"?)"]);
}

#[test]
fn partition_run_by_a_task_not_using_the_partition_manager() {
    let text =
        system(&format!("{}{}\n{}", manager(""), task("vid", 10, "untyped = \"64KiB\""), partition("linux", "")));
    assert_errors(
        &text,
        &["partition \"linux\": vid: task \"vid\" does not use the \"partition-manager\" endpoint (a VID \
           attaches its partitions there: add it to its uses)"],
    );
}

#[test]
fn partition_run_by_a_task_without_untyped() {
    let text = system(&format!(
        "{}{}\n{}",
        manager(""),
        task("vid", 10, "uses = [\"partition-manager\"]"),
        partition("linux", "")
    ));
    assert_errors(
        &text,
        &["partition \"linux\": vid: task \"vid\" has no untyped quota (give it untyped = \"64KiB\": it makes its \
           exit endpoint from it)"],
    );
}

#[test]
fn partition_run_by_the_supervisor() {
    let text =
        system(&format!("{}\n{}", manager(""), partition("linux", "").replace("vid = \"vid\"", "vid = \"root\"")));
    assert_errors(&text, &["partition \"linux\": vid: task \"root\" is the supervisor, which runs no partitions"]);
}

#[test]
fn partitions_without_a_partition_manager() {
    let text = system(&format!("{}\n{}", task("vid", 10, USES_MANAGER), partition("linux", "")));
    assert_errors(&text, &["task \"vid\": uses: no task serves endpoint \"partition-manager\""]);
}

#[test]
fn the_partition_manager_gets_untyped_memory_for_every_partition() {
    let text = system(&format!(
        "{}{}\n{}{}",
        manager("untyped = \"1MiB\""),
        task("vid", 10, USES_MANAGER),
        partition("a", ""),
        partition("b", "").replace("64MiB", "2MiB")
    ));
    let m = parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    let pm = m.tasks.iter().find(|t| t.name == "pm").unwrap();
    // Its own 1 MiB; each partition's RAM, 1 MiB, and a table per 2 MiB and
    // per GiB of RAM; its journal.
    let journal = sysimage::manifest::JOURNAL_NEED;
    assert_eq!(pm.untyped, ((1 + 65 + 3) << 20) + (32 + 1 + 1 + 1) * 4096 + journal);
    // The VID: its own 64 KiB and, per partition of 1 VP, a page for each
    // overlay page.
    let overlays = 2 * sysimage::objects::overlay_pages(1) as u64 * 4096;
    assert_eq!(m.tasks.iter().find(|t| t.name == "vid").unwrap().untyped, (64 << 10) + overlays);
}

#[test]
fn partitions_too_large_for_an_untyped_quota() {
    let three = (0..6).map(|i| spread(i, "").replace("\"64MiB\"", "\"3GiB\"")).collect::<String>();
    let text = with_vids(&three);
    assert_errors(
        &text,
        &["task \"pm\": untyped: 0 bytes with the 18917480 KiB the partitions need (memory, 1 MiB and page tables \
           each; monitor pages; its journal) is too large (at most 16384 MiB)"],
    );
}

#[test]
fn exit_timeout_out_of_range() {
    let text = with_vid(&format!(
        "{}{}",
        partition("a", "exit_timeout_ms = -1"),
        partition("b", "exit_timeout_ms = 60001").replace("64MiB", "2MiB")
    ));
    assert_errors(
        &text,
        &[
            "partition \"a\": exit_timeout_ms: -1 is out of range (0..=60000; 0 is no limit)",
            "partition \"b\": exit_timeout_ms: 60001 is out of range (0..=60000; 0 is no limit)",
        ],
    );
    let m = parse(&with_vid(&partition("a", "exit_timeout_ms = 0")), "t.toml").unwrap();
    assert_eq!(m.partitions[0].exit_timeout_ms, 0);
    let m = parse(&with_vid(&partition("a", "")), "t.toml").unwrap();
    assert_eq!(m.partitions[0].exit_timeout_ms, 5000);
}

#[test]
fn partition_memory_out_of_range() {
    let text = with_vid(&format!(
        "{}{}{}",
        partition("a", "").replace("64MiB", "1MiB"),
        partition("b", "").replace("\"64MiB\"", "\"4GiB\""),
        partition("c", "").replace("\"64MiB\"", "0"),
    ));
    assert_errors(
        &text,
        &[
            "partition \"a\": memory: 1 MiB is out of range (2 MiB to 3072 MiB)",
            "partition \"b\": memory: 4096 MiB is out of range (2 MiB to 3072 MiB)",
            "partition \"c\": memory: 0 bytes is out of range (2 MiB to 3072 MiB)",
        ],
    );
}

#[test]
fn partition_memory_not_a_page_multiple_or_not_a_size() {
    let text = with_vid(&format!(
        "{}{}",
        partition("a", "").replace("\"64MiB\"", "4194305"),
        partition("b", "").replace("\"64MiB\"", "\"64MB\"")
    ));
    assert_errors(
        &text,
        &[
            "partition \"a\": memory: 4194305 bytes is not a multiple of the page size (4096 bytes)",
            "partition \"b\": memory: is not a size (an integer number of bytes, or a number with KiB, MiB or GiB)",
        ],
    );
}

#[test]
fn partition_vcpus_out_of_range() {
    let text = with_vid(&format!("{}{}", partition("a", "vcpus = 0"), partition("b", "vcpus = 17")));
    assert_errors(
        &text,
        &["partition \"a\": vcpus: 0 is out of range (1..=16)", "partition \"b\": vcpus: 17 is out of range (1..=16)"],
    );
}

#[test]
fn partition_with_too_many_or_empty_modules() {
    let text = with_vid(&format!(
        "{}{}",
        partition("a", "modules = [\"1\", \"2\", \"3\", \"4\", \"5\"]"),
        partition("b", "modules = [\"\"]").replace("64MiB", "2MiB")
    ))
    .replace("66MiB", "70MiB");
    assert_errors(
        &text,
        &["partition \"a\": modules: 5 modules, at most 4", "partition \"b\": modules: a module file name is empty"],
    );
}

#[test]
fn partition_with_a_bad_cmdline() {
    let text = with_vid(&format!(
        "{}{}",
        partition("a", "cmdline = \"console=ttyS0\\nquiet\""),
        partition("b", &format!("cmdline = \"{}\"", "x".repeat(2049))).replace("64MiB", "2MiB")
    ))
    .replace("66MiB", "70MiB");
    assert_errors(
        &text,
        &[
            "partition \"a\": cmdline: use printable ASCII characters and spaces only",
            "partition \"b\": cmdline: 2049 bytes, at most 2048",
        ],
    );
}

#[test]
fn too_many_partitions() {
    let partitions: String = (0..9).map(|i| spread(i, "").replace("64MiB", "2MiB")).collect();
    let text = with_vids(&partitions);
    assert_errors(&text, &["system: partitions: 9 partitions, at most 8"]);
}

#[test]
fn a_vid_runs_at_most_four_partitions() {
    let partitions: String = (0..5).map(|i| partition(&format!("p{i}"), "").replace("64MiB", "2MiB")).collect();
    assert_errors(
        &with_vid(&partitions),
        &["partition \"p4\": vid: task \"vid\" runs 4 partitions already, the most one VID runs: give this one \
           another VID"],
    );
    // Four each on two VIDs start.
    let partitions: String = (0..8).map(|i| spread(i, "").replace("64MiB", "2MiB")).collect();
    let m = parse(&with_vids(&partitions), "t.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.partitions.len(), sysimage::manifest::MAX_PARTITIONS);
}

// ---- Enlightenments.

#[test]
fn enlightenment_profiles_and_overrides_are_accepted() {
    use tessera_manifest::{Enlightenment, Enlightenments};
    let of = |extra: &str| parse(&with_vid(&partition("linux", extra)), "t.toml").unwrap().partitions[0].enlightenments;
    assert_eq!(of(""), Enlightenments::NONE);
    assert_eq!(of("enlightenments = \"none\""), Enlightenments::NONE);
    assert_eq!(of("enlightenments = \"hyperv\""), Enlightenments::HYPERV);
    assert_eq!(
        of("enlightenments = { profile = \"hyperv\", reference_tsc = false, relaxed_timing = false }"),
        Enlightenments::HYPERV.with(Enlightenment::ReferenceTsc, false).with(Enlightenment::RelaxedTiming, false)
    );
    assert_eq!(
        of("[partitions.linux.enlightenments]\nhypercall = true\nvp_index = true\ncrash_msrs = true"),
        Enlightenments::INTERFACE.with(Enlightenment::CrashMsrs, true)
    );
}

#[test]
fn enlightenments_of_the_wrong_type() {
    assert_errors(
        &with_vid(&partition("linux", "enlightenments = 3")),
        &[
            "partition \"linux\": enlightenments: must be a profile name (\"none\", \"hyperv\" or \"hyperv-vsm\") or a table of a \
           profile and overrides",
        ],
    );
}

#[test]
fn unknown_enlightenment_profile() {
    assert_errors(
        &with_vid(&partition("linux", "enlightenments = \"hyper-v\"")),
        &[
            "partition \"linux\": enlightenments: unknown profile \"hyper-v\" (did you mean \"hyperv\"?) (use \"none\", \
           \"hyperv\" or \"hyperv-vsm\")",
        ],
    );
}

#[test]
fn unknown_base_profile_in_a_table() {
    assert_errors(
        &with_vid(&partition("linux", "enlightenments = { profile = \"kvm\" }")),
        &[
            "partition \"linux\": enlightenments.profile: unknown profile \"kvm\" (use \"none\", \"hyperv\" or \"hyperv-vsm\")",
        ],
    );
}

#[test]
fn base_profile_that_is_not_a_name() {
    assert_errors(
        &with_vid(&partition("linux", "enlightenments = { profile = true }")),
        &[
            "partition \"linux\": enlightenments.profile: must be a profile name (\"none\", \"hyperv\" or \"hyperv-vsm\")",
        ],
    );
}

#[test]
fn unknown_enlightenment() {
    assert_errors(
        &with_vid(&partition("linux", "enlightenments = { profile = \"hyperv\", refrence_tsc = false }")),
        &["partition \"linux\": enlightenments: unknown enlightenment \"refrence_tsc\" (did you mean \
           \"reference_tsc\"?)"],
    );
}

#[test]
fn enlightenment_override_that_is_not_a_boolean() {
    assert_errors(
        &with_vid(&partition("linux", "enlightenments = { profile = \"hyperv\", guest_idle = \"yes\" }")),
        &["partition \"linux\": enlightenments.guest_idle: must be true or false"],
    );
}

#[test]
fn enlightenment_without_the_hv1_interface() {
    assert_errors(
        &with_vid(&partition("linux", "enlightenments = { profile = \"hyperv\", vp_index = false }")),
        &["partition \"linux\": enlightenments: the \"Hv#1\" interface promises hypercall and vp_index (TLFS \
           3.13), so any enlightenment needs them: missing vp_index"],
    );
}

#[test]
fn enlightenment_without_its_dependency() {
    assert_errors(
        &with_vid(&partition("linux", "enlightenments = { profile = \"hyperv\", time_ref_count = false }")),
        &[
            "partition \"linux\": enlightenments: reference_tsc requires time_ref_count",
            "partition \"linux\": enlightenments: synthetic_timers requires time_ref_count",
        ],
    );
}

#[test]
fn ex_processor_masks_without_a_hypercall_that_uses_them() {
    let text = "enlightenments = { profile = \"hyperv\", remote_tlb_flush = false, cluster_ipi = false }";
    assert_errors(
        &with_vid(&partition("linux", text)),
        &["partition \"linux\": enlightenments: ex_processor_masks requires remote_tlb_flush or cluster_ipi"],
    );
}

#[test]
fn vsm_needs_the_synic_and_the_vp_assist_page() {
    assert_errors(
        &with_vid(&partition("linux", "enlightenments = { profile = \"hyperv-vsm\", apic_msrs = false }")),
        &["partition \"linux\": enlightenments: vsm requires apic_msrs"],
    );
    assert_errors(
        &with_vid(&partition(
            "linux",
            "enlightenments = { profile = \"hyperv-vsm\", synic = false, synthetic_timers = false }",
        )),
        &["partition \"linux\": enlightenments: vsm requires synic"],
    );
    let m = parse(&with_vid(&partition("linux", "enlightenments = \"hyperv-vsm\"")), "t.toml")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.partitions[0].enlightenments, tessera_manifest::Enlightenments::HYPERV_VSM);
    let m = parse(&with_vid(&partition("linux", "enlightenments = { profile = \"hyperv\", vsm = true }")), "t.toml")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.partitions[0].enlightenments, tessera_manifest::Enlightenments::HYPERV_VSM);
}

#[test]
fn synthetic_timers_need_the_reference_counter() {
    let text = "enlightenments = { hypercall = true, vp_index = true, synic = true, synthetic_timers = true }";
    assert_errors(
        &with_vid(&partition("linux", text)),
        &["partition \"linux\": enlightenments: synthetic_timers requires time_ref_count"],
    );
    let both = "enlightenments = { profile = \"none\", hypercall = true, vp_index = true, synic = true, \
                synthetic_timers = true, time_ref_count = true }";
    let m = parse(&with_vid(&partition("linux", both)), "t.toml").unwrap_or_else(|e| panic!("{e}"));
    let set = m.partitions[0].enlightenments;
    assert!(set.contains(tessera_manifest::Enlightenment::SyntheticTimers) && set.direct_synthetic_timers());
}

#[test]
fn synthetic_timers_need_the_synic() {
    assert_errors(
        &with_vid(&partition("linux", "enlightenments = { profile = \"hyperv\", synic = false }")),
        &["partition \"linux\": enlightenments: synthetic_timers requires synic"],
    );
}

#[test]
fn the_hyperv_testdev_needs_the_synic() {
    assert_errors(
        &with_vid(&partition(
            "linux",
            "enlightenments = { profile = \"hyperv\", synic = false, synthetic_timers = false }\ndevices = [\"hyperv-testdev\"]",
        )),
        &[
            "partition \"linux\": devices: \"hyperv-testdev\" needs the synic enlightenment (add synic = true to its enlightenments)",
        ],
    );
}

#[test]
fn unknown_and_repeated_devices() {
    let text = "enlightenments = { profile = \"hyperv\", synic = true }\n\
                devices = [\"hyperv-testdevice\", \"hyperv-testdev\", \"hyperv-testdev\"]";
    assert_errors(
        &with_vid(&partition("linux", text)),
        &[
            "partition \"linux\": devices: \"hyperv-testdev\" is listed twice",
            "partition \"linux\": devices: unknown device \"hyperv-testdevice\" (known: \"hyperv-testdev\")",
        ],
    );
}

#[test]
fn on_reset_is_restart_by_default_or_stop() {
    let policy = |extra: &str| parse(&with_vid(&partition("linux", extra)), "t.toml").map(|m| m.partitions[0].on_reset);
    assert_eq!(policy(""), Ok(sysimage::OnReset::Restart));
    assert_eq!(policy("on_reset = \"restart\""), Ok(sysimage::OnReset::Restart));
    assert_eq!(policy("on_reset = \"stop\""), Ok(sysimage::OnReset::Stop));
}

#[test]
fn unknown_on_reset_policy() {
    assert_errors(
        &with_vid(&partition("linux", "on_reset = \"reboot\"")),
        &["partition \"linux\": on_reset: unknown policy \"reboot\" (expected \"restart\" or \"stop\")"],
    );
}

#[test]
fn a_cpuid_mask_names_known_features_once_and_hides_what_needs_them() {
    assert_errors(
        &with_vid(&partition("linux", "cpuid_mask = [\"x2apc\", \"x2apic\", \"x2apic\"]")),
        &[
            "partition \"linux\": cpuid_mask: \"x2apic\" is listed twice",
            "partition \"linux\": cpuid_mask: unknown feature \"x2apc\" (did you mean \"x2apic\"?)",
        ],
    );
    assert_errors(
        &with_vid(&partition("linux", "cpuid_mask = [\"xsave\", \"pku\"]")),
        &["partition \"linux\": cpuid_mask: hides \"xsave\" but not \"avx\", which needs it (hide both)"],
    );
}

// ---- The classic scheduler (TLFS 14.2): [scheduler] and a partition's
// ---- weight, reserve, cap and cpus.

const CLASSIC: &str = "[scheduler]\npolicy = \"classic\"\n";

/// A VID system with the classic policy and partition "linux" with `extra`.
fn classic(extra: &str) -> String {
    format!("{}\n{CLASSIC}", with_vid(&partition("linux", extra)))
}

#[test]
fn classic_parameters_are_accepted_and_compiled() {
    let m = parse(&classic("vcpus = 2\nweight = 700\nreserve = 0.25\ncap = 0.5\ncpus = [1, 0]"), "t.toml").unwrap();
    assert_eq!(m.scheduler, tessera_manifest::SchedulerPolicy::Classic);
    let p = &m.partitions[0];
    assert_eq!(p.classic, tessera_manifest::Classic { reserve: 0x4000, cap: 0x8000, weight: 700 });
    assert_eq!(p.cpus, [1, 0]);
    // 0 and 1 may be integers; the defaults are no reserve, no cap, weight 100.
    let m = parse(&classic("reserve = 0\ncap = 1"), "t.toml").unwrap();
    assert_eq!(m.partitions[0].classic, tessera_manifest::Classic::DEFAULT);
    let m = parse(&with_vid(&partition("linux", "cpus = [2]")), "t.toml").unwrap();
    assert_eq!((m.scheduler, m.partitions[0].cpus.clone()), (tessera_manifest::SchedulerPolicy::Kernel, vec![2]));
}

#[test]
fn classic_parameters_without_the_classic_policy() {
    assert_errors(
        &with_vid(&partition("linux", "weight = 200\ncap = 0.5")),
        &[
            "partition \"linux\": cap: is a classic scheduler parameter: add [scheduler] policy = \"classic\"",
            "partition \"linux\": weight: is a classic scheduler parameter: add [scheduler] policy = \"classic\"",
        ],
    );
}

#[test]
fn the_core_scheduler_is_accepted_without_classic_parameters() {
    let text = format!("{}\n[scheduler]\npolicy = \"core\"\n", with_vid(&partition("linux", "vcpus = 2")));
    let m = parse(&text, "t.toml").unwrap();
    assert_eq!(m.scheduler, tessera_manifest::SchedulerPolicy::Core);
    let text = format!("{}\n[scheduler]\npolicy = \"core\"\n", with_vid(&partition("linux", "weight = 200")));
    assert_errors(
        &text,
        &["partition \"linux\": weight: is a classic scheduler parameter: add [scheduler] policy = \"classic\""],
    );
}

#[test]
fn the_root_scheduler_takes_no_classic_parameters() {
    let text =
        format!("{}\n[scheduler]\npolicy = \"root\"\n", with_vid(&partition("linux", "vcpus = 2\ncpus = [0, 1]")));
    let m = parse(&text, "t.toml").unwrap();
    assert_eq!((m.scheduler, m.partitions[0].cpus.clone()), (tessera_manifest::SchedulerPolicy::Root, vec![0, 1]));
    assert_eq!(m.partitions[0].classic, tessera_manifest::Classic::DEFAULT);
    let text = format!("{}\n[scheduler]\npolicy = \"root\"\n", with_vid(&partition("linux", "weight = 200")));
    assert_errors(
        &text,
        &["partition \"linux\": weight: is a classic scheduler parameter: add [scheduler] policy = \"classic\""],
    );
    let text = format!("{}\n[scheduler]\npolicy = \"clasic\"\n", with_vid(&partition("linux", "")));
    assert_errors(
        &text,
        &[
            "scheduler: policy: no scheduler \"clasic\" (did you mean \"classic\"?) (\"classic\", \"core\" and \"root\" are)",
        ],
    );
}

#[test]
fn weight_out_of_range() {
    for w in ["0", "10001", "-1"] {
        let messages = errors(&classic(&format!("weight = {w}")));
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert!(
            messages[0].starts_with("partition \"linux\": weight: ") && messages[0].contains("10000"),
            "{messages:?}"
        );
    }
    assert!(parse(&classic("weight = 1"), "t.toml").is_ok() && parse(&classic("weight = 10000"), "t.toml").is_ok());
}

#[test]
fn reserve_and_cap_are_fractions_of_one_cpu() {
    assert_errors(
        &classic("reserve = 1.5"),
        &["partition \"linux\": reserve: 1.5 is out of range (a fraction of one logical processor, 0.0 to 1.0)"],
    );
    assert_errors(
        &classic("cap = -0.25"),
        &["partition \"linux\": cap: -0.25 is out of range (a fraction of one logical processor, 0.0 to 1.0)"],
    );
    assert_errors(
        &classic("cap = 16384"),
        &["partition \"linux\": cap: 16384 is not a fraction of one logical processor (write 0.0 to 1.0, e.g. 0.25)"],
    );
    assert_errors(
        &classic("reserve = \"50%\""),
        &[
            "partition \"linux\": reserve: \"50%\" is not a fraction of one logical processor (write 0.0 to 1.0, e.g. 0.25)",
        ],
    );
}

#[test]
fn a_cap_of_zero() {
    assert_errors(
        &classic("cap = 0.0"),
        &["partition \"linux\": cap: a cap of 0 would never run the partition's VPs (leave cap out for no cap)"],
    );
}

#[test]
fn reserve_above_the_cap() {
    assert_errors(
        &classic("reserve = 0.5\ncap = 0.25"),
        &["partition \"linux\": reserve: reserve 0x8000 is above the cap 0x4000"],
    );
}

#[test]
fn reserves_above_one_cpu() {
    let two = format!(
        "{}{}\n{CLASSIC}",
        with_vid(&partition("a", "reserve = 0.5\ncpus = [1]\nvcpus = 2")),
        partition("b", "reserve = 0.25\ncpus = [1, 2]").replace("64MiB", "2MiB")
    );
    assert_errors(
        &two,
        &[
            "scheduler: reserve: the reserves of the VPs on logical processor 1 add up to 1.25 of it, more than all of it \
           (the VPs of partitions \"a\", \"b\")",
        ],
    );
    // Spread over two CPUs they fit.
    let fits = two.replace("cpus = [1]\n", "cpus = [1, 2]\n");
    assert!(parse(&fits, "t.toml").is_ok(), "{:?}", parse(&fits, "t.toml").err());
}

#[test]
fn bad_cpus() {
    assert_errors(
        &classic("cpus = [16]"),
        &["partition \"linux\": cpus: CPU 16 is out of range (0..=15, 0 is the boot CPU)"],
    );
    assert_errors(&classic("cpus = [1, 1]"), &["partition \"linux\": cpus: CPU 1 is listed twice"]);
    assert_errors(
        &classic("cpus = []"),
        &[
            "partition \"linux\": cpus: is empty (leave it out for the default placement: VP i on CPU i mod the CPU count)",
        ],
    );
}

#[test]
fn a_reserve_above_its_vids_priority() {
    let text = format!(
        "{}{}\n{}\n{CLASSIC}",
        system(&manager("")),
        task("vid", 0, USES_MANAGER),
        partition("linux", "reserve = 0.5")
    );
    assert_errors(
        &text,
        &["partition \"linux\": reserve: its VID \"vid\" runs at priority 0, below the reserve's priority 1 (a VID \
           can give its VPs no priority above its own)"],
    );
}

// ---- Connections.

/// Partitions "alpha" (2 VPs) and "beta" (1 VP) of a VID that uses the
/// broker, and the `[[connections]]` in `connections`.
fn connected(connections: &str) -> String {
    let vid = task("vid", 10, "untyped = \"64KiB\"\nuses = [\"partition-manager\", \"broker\"]");
    format!(
        "{}{}{vid}\n{}{}\n{connections}",
        system(&manager("")),
        task("broker", 15, "serves = [\"broker\"]"),
        partition("alpha", &format!("vcpus = 2\n{SYNIC}")),
        partition("beta", SYNIC).replace("64MiB", "2MiB"),
    )
}

/// What a connection's ends need: the SynIC (its privileges and SINTs).
const SYNIC: &str = "enlightenments = { profile = \"hyperv\", synic = true }";

/// One `[[connections]]` entry: alpha to beta, then `extra` lines.
fn connection(from: &str, to: &str, port_type: &str, extra: &str) -> String {
    format!("[[connections]]\nfrom = \"{from}\"\nto = \"{to}\"\ntype = \"{port_type}\"\n{extra}\n")
}

const IDS: &str = "connection_id = 1\nport_id = 2\nsint = 3";

/// A monitor connection's pages from "alpha" (64 MiB of RAM) to "beta" (2
/// MiB), each right above the partition's RAM...
const PAGES: &str = "from_page = 0x400_0000\nto_page = 0x20_0000";
/// ...and for a self-connection of "alpha".
const ALPHA_PAGES: &str = "from_page = 0x400_0000\nto_page = 0x400_1000";

#[test]
fn valid_connections_are_accepted_and_compiled() {
    let text = connected(&format!(
        "{}{}{}",
        connection("alpha", "beta", "message", "connection_id = 0xffffff\nport_id = 0\nsint = 15"),
        connection(
            "beta",
            "alpha",
            "event",
            "connection_id = 0xffffff\nport_id = 0\nsint = 0\ntarget_vp = 1\nflag = 2040\nflag_count = 8"
        ),
        // A self-connection is legal (as in Hyper-V).
        connection("alpha", "alpha", "monitor", &format!("connection_id = 7\nport_id = 7\n{ALPHA_PAGES}")),
    ));
    let m = parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    let c = &m.connections;
    assert_eq!(c.len(), 3);
    let (alpha, beta) = (Party::Partition(0), Party::Partition(1));
    assert_eq!((c[0].from, c[0].to, c[0].connection_id, c[0].port_id, c[0].sint), (alpha, beta, 0xff_ffff, 0, 15));
    assert_eq!(
        (c[1].port_type, c[1].target_vp, c[1].flag, c[1].flag_count),
        (tessera_manifest::PortType::Event, 1, 2040, 8)
    );
    assert_eq!((c[2].from, c[2].to, c[2].flag, c[2].flag_count), (alpha, alpha, 0, 0));
    let summary = tessera_manifest::summary(&m);
    assert!(summary.contains("connection 0xffffff of alpha -> port 0x0 of beta (message; VP 0, SINT 15)"), "{summary}");
    assert!(
        summary.contains("connection 0xffffff of beta -> port 0x0 of alpha (event, flags 2040..=2047; VP 1, SINT 0)")
    );
    let bytes = tessera_manifest::compile(&m).unwrap();
    let compiled = sysimage::Manifest::parse(&bytes).unwrap();
    assert_eq!(compiled.connections.len(), 3);
    assert_eq!(compiled.connections[1].to, sysimage::manifest::Party::Partition(sysimage::PartitionIndex(0)));
    assert_eq!(compiled.connections[1].port_type.tlfs(), 2);
    // One flag by default.
    let one = parse(&connected(&connection("alpha", "beta", "event", &format!("{IDS}\nflag = 9"))), "t.toml").unwrap();
    assert_eq!((one.connections[0].flag, one.connections[0].flag_count), (9, 1));
}

#[test]
fn connection_ends_without_the_synic() {
    let monitor = format!("connection_id = 1\nport_id = 2\n{PAGES}");
    for (a, port_type, fields, call, privilege, arrives) in [
        ("a", "message", IDS.to_string(), "HvPostMessage", "PostMessages", "a SIM slot and a SINT"),
        ("an", "event", format!("{IDS}\nflag = 1"), "HvSignalEvent", "SignalEvents", "SIEF flags and a SINT"),
        (
            "a",
            "monitor",
            monitor,
            "HvSignalEvent (its trigger is signalled on its behalf, TLFS 11.7)",
            "SignalEvents",
            "SIEF flags and a SINT",
        ),
    ] {
        let text = connected(&connection("alpha", "beta", port_type, &fields));
        let holder = text.replacen(
            SYNIC,
            "enlightenments = { profile = \"hyperv\", synic = false, synthetic_timers = false }",
            1,
        );
        assert_errors(
            &holder,
            &[&format!(
                "connection 1 (\"alpha\" to \"beta\"): from: partition \"alpha\" cannot hold {a} {port_type} connection: it \
                 would call {call}, which needs the {privilege} privilege, granted with synic (add synic = true to its \
                 enlightenments)"
            )],
        );
        let owner = text.replace(&format!("vid = \"vid\"\n{SYNIC}\n"), "vid = \"vid\"\n");
        assert_errors(
            &owner,
            &[&format!(
                "connection 1 (\"alpha\" to \"beta\"): to: partition \"beta\" cannot own {a} {port_type} port: its \
                 deliveries arrive through the SynIC, in {arrives} (add synic = true to its enlightenments)"
            )],
        );
    }
    // A self-connection without the SynIC: both of its ends are refused.
    let text = connected(&connection("beta", "beta", "message", IDS)).replace(
        &format!("vid = \"vid\"\n{SYNIC}\n"),
        "vid = \"vid\"\nenlightenments = { profile = \"hyperv\", synic = false, synthetic_timers = false }\n",
    );
    assert_eq!(parse(&text, "t.toml").map(|_| ()).map_err(|e| e.messages().len()), Err(2));
}

#[test]
fn connection_to_an_unknown_partition() {
    assert_errors(
        &connected(&connection("alpha", "betta", "message", IDS)),
        &["connection 1 (\"alpha\" to \"betta\"): to: no partition or task \"betta\" (did you mean \"beta\"?)"],
    );
    assert_errors(
        &connected(&connection("gamma", "beta", "message", IDS)),
        &["connection 1 (\"gamma\" to \"beta\"): from: no partition or task \"gamma\""],
    );
}

/// A task serving its own port, as the VMBus host does: "alpha" posts to
/// the task's port, the task answers on its connection to "alpha".
fn served(host_uses: &str) -> String {
    let host = task("host", 12, host_uses);
    connected(&format!(
        "{host}\n{}{}",
        connection("alpha", "host", "message", "connection_id = 4\nport_id = 1\nsint = 0"),
        connection("host", "alpha", "message", "connection_id = 1\nport_id = 5\nsint = 2"),
    ))
}

#[test]
fn a_task_may_own_a_port_and_hold_a_connection() {
    let m = parse(&served("uses = [\"broker\"]"), "t.toml").unwrap_or_else(|e| panic!("{e}"));
    let host = m.tasks.iter().position(|t| t.name == "host").unwrap();
    let c = &m.connections;
    assert_eq!((c[0].from, c[0].to), (Party::Partition(0), Party::Task(host)));
    assert_eq!((c[1].from, c[1].to, c[1].sint), (Party::Task(host), Party::Partition(0), 2));
    let summary = tessera_manifest::summary(&m);
    assert!(summary.contains("connection 0x4 of alpha -> port 0x1 of host (message; VP 0, SINT 0)"), "{summary}");
    let compiled = tessera_manifest::compile(&m).unwrap();
    let compiled = sysimage::Manifest::parse(&compiled).unwrap();
    let task = sysimage::manifest::Party::Task(sysimage::manifest::TaskIndex(host as u8));
    assert_eq!(compiled.connections[0].to, task);
    assert_eq!(compiled.task_parties().map(|t| usize::from(t.0)).collect::<Vec<_>>(), [host]);
    // A task that only holds a connection is a party too, told of
    // deliveries (its notification names its party).
    let text = served("uses = [\"broker\"]");
    let only_holds = text.replacen("to = \"host\"", "to = \"alpha\"", 1);
    let m = parse(&only_holds, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    let compiled = tessera_manifest::compile(&m).unwrap();
    let compiled = sysimage::Manifest::parse(&compiled).unwrap();
    let tasks: Vec<usize> = compiled.notified_tasks().map(|t| usize::from(t.0)).collect();
    assert!(tasks.contains(&host), "{tasks:?}");
}

#[test]
fn a_task_party_must_use_the_broker_and_have_one_vp() {
    assert_errors(
        &served(""),
        &[
            "connection 1 (\"alpha\" to \"host\"): to: task \"host\" does not use the \"broker\" endpoint (add it to \
             its uses)",
            "connection 2 (\"host\" to \"alpha\"): from: task \"host\" does not use the \"broker\" endpoint (add it to \
             its uses)",
        ],
    );
    let text = served("uses = [\"broker\"]").replace("port_id = 1\nsint = 0", "port_id = 1\nsint = 0\ntarget_vp = 1");
    assert_errors(
        &text,
        &["connection 1 (\"alpha\" to \"host\"): target_vp: 1: a task's port has one target, VP 0 (task \"host\")"],
    );
    let text = served("uses = [\"broker\"]").replace("to = \"host\"", "to = \"broker\"");
    assert_errors(
        &text,
        &["connection 1 (\"alpha\" to \"broker\"): to: task \"broker\" is the supervisor or the broker, which serve \
           no port"],
    );
}

#[test]
fn connection_of_an_invalid_partition() {
    let text = connected(&connection("alpha", "beta", "message", IDS)).replace("vcpus = 2", "vcpus = 0");
    assert_errors(
        &text,
        &[
            "connection 1 (\"alpha\" to \"beta\"): from: partition \"alpha\" is not valid (see its errors), so it has no \
             VID to carry it",
            "partition \"alpha\": vcpus: 0 is out of range (1..=16)",
        ],
    );
}

#[test]
fn connection_of_a_vid_not_using_the_broker() {
    let text = connected(&connection("alpha", "beta", "message", IDS)).replace(", \"broker\"]", "]");
    assert_errors(
        &text,
        &[
            "connection 1 (\"alpha\" to \"beta\"): from: partition \"alpha\"'s VID \"vid\" does not use the \"broker\" \
             endpoint (add it to its uses)",
            "connection 1 (\"alpha\" to \"beta\"): to: partition \"beta\"'s VID \"vid\" does not use the \"broker\" \
             endpoint (add it to its uses)",
        ],
    );
}

#[test]
fn connections_without_a_broker() {
    let text = with_vid(&format!("{}{}", partition("alpha", SYNIC), connection("alpha", "alpha", "message", IDS)));
    assert_errors(
        &text,
        &[
            "connection 1 (\"alpha\" to \"alpha\"): from: partition \"alpha\"'s VID \"vid\" does not use the \"broker\" \
             endpoint (add it to its uses)",
            "connection 1 (\"alpha\" to \"alpha\"): to: partition \"alpha\"'s VID \"vid\" does not use the \"broker\" \
             endpoint (add it to its uses)",
            "system: connections: no task serves the \"broker\" endpoint (the broker carries every connection: add it, \
             above the VIDs)",
        ],
    );
}

#[test]
fn the_broker_must_be_above_the_vids() {
    let text = connected(&connection("alpha", "beta", "message", IDS)).replace("priority = 15", "priority = 5");
    assert_errors(
        &text,
        &["task \"vid\": uses: endpoint \"broker\" is served by task \"broker\" at priority 5, not higher than this \
           task's 10 (calls must go to a higher priority)"],
    );
}

#[test]
fn connection_with_an_unknown_type() {
    assert_errors(
        &connected(&connection("alpha", "beta", "messages", IDS)),
        &["connection 1 (\"alpha\" to \"beta\"): type: no port type \"messages\" (did you mean \"message\"?) \
           (\"message\", \"event\" and \"monitor\" are)"],
    );
}

#[test]
fn connection_ids_out_of_range() {
    let text = connected(&connection("alpha", "beta", "message", "connection_id = 0x1000000\nport_id = -1\nsint = 3"));
    assert_errors(
        &text,
        &[
            "connection 1 (\"alpha\" to \"beta\"): connection_id: 16777216 is out of range (0..=0xffffff: a 24-bit ID, \
             TLFS 11.10)",
            "connection 1 (\"alpha\" to \"beta\"): port_id: -1 is out of range (0..=0xffffff: a 24-bit ID, TLFS 11.10)",
        ],
    );
}

#[test]
fn connection_to_a_vp_beyond_the_partitions() {
    assert_errors(
        &connected(&connection("alpha", "beta", "message", &format!("{IDS}\ntarget_vp = 1"))),
        &["connection 1 (\"alpha\" to \"beta\"): target_vp: 1 is not a VP of partition \"beta\" (it has 1: 0..=0)"],
    );
    assert!(parse(&connected(&connection("beta", "alpha", "message", &format!("{IDS}\ntarget_vp = 1"))), "t").is_ok());
}

#[test]
fn connection_sint_out_of_range() {
    assert_errors(
        &connected(&connection("alpha", "beta", "message", "connection_id = 1\nport_id = 2\nsint = 16")),
        &["connection 1 (\"alpha\" to \"beta\"): sint: 16 is out of range (0..=15)"],
    );
}

#[test]
fn event_flags_out_of_range() {
    let event = |extra: &str| connected(&connection("alpha", "beta", "event", &format!("{IDS}\n{extra}")));
    assert_errors(
        &event(""),
        &["connection 1 (\"alpha\" to \"beta\"): flag: an event port needs its flag number (0..=2047)"],
    );
    assert_errors(
        &event("flag = 2048"),
        &["connection 1 (\"alpha\" to \"beta\"): flag: 2048 is out of range (0..=2047, the flags of one SINT)"],
    );
    assert_errors(
        &event("flag = 2000\nflag_count = 49"),
        &["connection 1 (\"alpha\" to \"beta\"): flag_count: 49 flags from 2000 do not fit the 2048 flags of one \
           SINT (1..=48)"],
    );
    assert_errors(
        &event("flag = 0\nflag_count = 0"),
        &["connection 1 (\"alpha\" to \"beta\"): flag_count: 0 flags from 0 do not fit the 2048 flags of one SINT \
           (1..=2048)"],
    );
    assert_errors(
        &connected(&connection("alpha", "beta", "message", &format!("{IDS}\nflag = 1"))),
        &["connection 1 (\"alpha\" to \"beta\"): flag: only an event port has flags (this one is a message port)"],
    );
}

#[test]
fn duplicate_connection_and_port_ids() {
    let text = connected(&format!(
        "{}{}",
        connection("alpha", "beta", "message", IDS),
        connection("alpha", "beta", "message", IDS)
    ));
    assert_errors(
        &text,
        &[
            "connection 2 (\"alpha\" to \"beta\"): connection_id: 0x1 is already a connection of \"alpha\" (connection 1)",
            "connection 2 (\"alpha\" to \"beta\"): port_id: 0x2 is already a port of \"beta\" (connection 1)",
        ],
    );
    // The same IDs in the other direction are another partition's.
    let other = connected(&format!(
        "{}{}",
        connection("alpha", "beta", "message", IDS),
        connection("beta", "alpha", "message", IDS)
    ));
    assert!(parse(&other, "t").is_ok());
}

#[test]
fn too_many_connections() {
    let many: String = (0..33)
        .map(|i| connection("alpha", "beta", "message", &format!("connection_id = {i}\nport_id = {i}\nsint = 0")))
        .collect();
    assert_errors(&connected(&many), &["system: connections: 33 connections, at most 32"]);
}

// ---- Monitor connections (TLFS 11.7).

/// A monitor connection from "alpha" to "beta" with `extra` lines.
fn monitor(extra: &str) -> String {
    connected(&connection("alpha", "beta", "monitor", &format!("connection_id = 1\nport_id = 2\n{extra}")))
}

#[test]
fn a_monitor_connection_has_its_page_in_both_partitions() {
    let m = parse(&monitor(PAGES), "t.toml").unwrap_or_else(|e| panic!("{e}"));
    let c = &m.connections[0];
    assert_eq!((c.from_page, c.to_page, c.target_vp, c.sint), (Some(64 << 20), Some(2 << 20), 0, 0));
    let summary = tessera_manifest::summary(&m);
    assert!(
        summary.contains(
            "connection 0x1 of alpha -> port 0x2 of beta (monitor, page 0x4000000 in alpha, page 0x200000 in beta)"
        ),
        "{summary}"
    );
    let bytes = tessera_manifest::compile(&m).unwrap();
    let compiled = sysimage::Manifest::parse(&bytes).unwrap();
    assert_eq!((compiled.connections[0].from_page, compiled.connections[0].to_page), (Some(64 << 20), Some(2 << 20)));
    // Other connections have none.
    let message = parse(&connected(&connection("alpha", "beta", "message", IDS)), "t.toml").unwrap();
    assert_eq!((message.connections[0].from_page, message.connections[0].to_page), (None, None));
    // The last page below the platform MMIO is fine.
    assert!(parse(&monitor("from_page = 0xfebf_f000\nto_page = 0x20_0000"), "t.toml").is_ok());
}

#[test]
fn the_partition_manager_pays_for_monitor_pages() {
    let plain = parse(&connected(&connection("alpha", "beta", "message", IDS)), "t.toml").unwrap();
    let monitored = parse(&monitor(PAGES), "t.toml").unwrap();
    let pm = |m: &tessera_manifest::Manifest| m.tasks.iter().find(|t| t.name == "pm").cloned().unwrap();
    // The page, and a page directory and a page table for each mapping.
    assert_eq!(pm(&monitored).untyped, pm(&plain).untyped + 5 * 4096);
    let memory = abi::EntryKind::Memory;
    assert_eq!(pm(&monitored).objects.get(memory), pm(&plain).objects.get(memory) + 1);
}

#[test]
fn a_monitor_connection_without_its_pages() {
    assert_errors(
        &monitor(""),
        &[
            "connection 1 (\"alpha\" to \"beta\"): from_page: a monitor connection needs the GPA of its monitor page in \
             partition \"alpha\" (a page above its RAM, below 0xfec00000)",
            "connection 1 (\"alpha\" to \"beta\"): to_page: a monitor connection needs the GPA of its monitor page in \
             partition \"beta\" (a page above its RAM, below 0xfec00000)",
        ],
    );
}

#[test]
fn a_monitor_port_takes_no_sint_target_vp_or_flags() {
    assert_errors(
        &monitor(&format!("{PAGES}\nsint = 4\ntarget_vp = 0\nflag = 1\nflag_count = 1")),
        &[
            "connection 1 (\"alpha\" to \"beta\"): flag: only an event port has flags (this one is a monitor port)",
            "connection 1 (\"alpha\" to \"beta\"): flag_count: only an event port has flags (this one is a monitor port)",
            "connection 1 (\"alpha\" to \"beta\"): sint: a monitor port has no SINT (TLFS 11.7: its trigger is \
             signalled on the event connection its monitor page names; remove it)",
            "connection 1 (\"alpha\" to \"beta\"): target_vp: a monitor port has no target VP (TLFS 11.7: its trigger \
             is signalled on the event connection its monitor page names; remove it)",
        ],
    );
}

#[test]
fn message_and_event_ports_need_a_sint() {
    assert_errors(
        &connected(&connection("alpha", "beta", "event", "connection_id = 1\nport_id = 2\nflag = 0")),
        &["connection 1 (\"alpha\" to \"beta\"): sint: an event port needs the SINT its deliveries arrive through \
           (0..=15)"],
    );
}

#[test]
fn monitor_pages_on_another_port_type() {
    assert_errors(
        &connected(&connection("alpha", "beta", "message", &format!("{IDS}\n{PAGES}"))),
        &[
            "connection 1 (\"alpha\" to \"beta\"): from_page: only a monitor connection has a monitor page (this one is \
             a message connection)",
            "connection 1 (\"alpha\" to \"beta\"): to_page: only a monitor connection has a monitor page (this one is a \
             message connection)",
        ],
    );
}

#[test]
fn a_task_cannot_hold_a_monitor_connection_nor_have_a_monitor_page() {
    let host = task("host", 12, "uses = [\"broker\"]");
    let text = connected(&format!(
        "{host}\n{}",
        connection("host", "alpha", "monitor", "connection_id = 1\nport_id = 2\nto_page = 0x400_0000")
    ));
    assert_errors(
        &text,
        &[
            "connection 1 (\"host\" to \"alpha\"): from: task \"host\" cannot hold a monitor connection: the trigger is \
           signalled on behalf of a partition, from its monitor page (hold it from a partition)",
        ],
    );
    // A task's port: no to_page, which it cannot have.
    let text = connected(&format!(
        "{host}\n{}",
        connection("alpha", "host", "monitor", &format!("connection_id = 1\nport_id = 2\n{PAGES}"))
    ));
    assert_errors(
        &text,
        &[
            "connection 1 (\"alpha\" to \"host\"): to_page: task \"host\" has no guest-physical space for a monitor page \
           (remove to_page)",
        ],
    );
    let text = text.replace("\nto_page = 0x20_0000", "");
    let m = parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((m.connections[0].from_page, m.connections[0].to_page), (Some(64 << 20), None));
}

#[test]
fn a_monitor_page_that_is_not_page_aligned_or_an_address() {
    assert_errors(
        &monitor("from_page = 0x400_0800\nto_page = -4096"),
        &[
            "connection 1 (\"alpha\" to \"beta\"): from_page: 0x4000800 is not page-aligned (a monitor page of \
             partition \"alpha\" is a 4 KiB page)",
            "connection 1 (\"alpha\" to \"beta\"): to_page: -4096 is not a guest-physical address",
        ],
    );
}

#[test]
fn a_monitor_page_in_ram_or_in_the_platform_mmio() {
    assert_errors(
        &monitor("from_page = 0x3ff_f000\nto_page = 0xfec0_0000"),
        &[
            "connection 1 (\"alpha\" to \"beta\"): from_page: 0x3fff000 is inside partition \"alpha\"'s RAM, which ends \
             at 0x4000000 (a monitor page goes at or above it)",
            "connection 1 (\"alpha\" to \"beta\"): to_page: 0xfec00000 is in partition \"beta\"'s platform MMIO \
             (0xfec00000 and up: I/O APIC, HPET, local APIC; a monitor page goes below it)",
        ],
    );
    // The legacy hole and the ROM are below the RAM's end too.
    assert_errors(
        &monitor("from_page = 0x400_0000\nto_page = 0xf_f000"),
        &["connection 1 (\"alpha\" to \"beta\"): to_page: 0xff000 is inside partition \"beta\"'s RAM, which ends at \
           0x200000 (a monitor page goes at or above it)"],
    );
}

#[test]
fn a_monitor_page_used_twice_in_one_partition() {
    let text = connected(&format!(
        "{}{}",
        connection("alpha", "beta", "monitor", &format!("connection_id = 1\nport_id = 2\n{PAGES}")),
        connection(
            "beta",
            "alpha",
            "monitor",
            "connection_id = 1\nport_id = 2\nfrom_page = 0x30_0000\nto_page = 0x400_0000"
        ),
    ));
    assert_errors(
        &text,
        &["connection 2 (\"beta\" to \"alpha\"): to_page: 0x4000000 is already a monitor page of partition \"alpha\" \
           (connection 1's from_page)"],
    );
    // A self-connection sees its page at two GPAs.
    let text = connected(&connection(
        "alpha",
        "alpha",
        "monitor",
        "connection_id = 1\nport_id = 2\nfrom_page = 0x400_0000\nto_page = 0x400_0000",
    ));
    assert_errors(
        &text,
        &[
            "connection 1 (\"alpha\" to \"alpha\"): to_page: 0x4000000 is already a monitor page of partition \"alpha\" \
           (this connection's from_page)",
        ],
    );
}

#[test]
fn a_partition_holds_at_most_two_monitor_connections() {
    let held = |n: u32| -> String {
        (0..n)
            .map(|i| {
                let pages =
                    format!("from_page = {:#x}\nto_page = {:#x}", 0x400_0000 + i * 0x1000, 0x20_0000 + i * 0x1000);
                connection("alpha", "beta", "monitor", &format!("connection_id = {i}\nport_id = {i}\n{pages}"))
            })
            .collect()
    };
    assert!(parse(&connected(&held(2)), "t.toml").is_ok());
    assert_errors(
        &connected(&held(3)),
        &[
            "connection 3 (\"alpha\" to \"beta\"): from: partition \"alpha\" holds more than 2 monitor connections (its \
           VID inspects each page)",
        ],
    );
}

/// A system with the supervisor only, `line` added after `after`.
fn system_with(after: &str, line: &str) -> String {
    system("").replace(after, &format!("{after}{line}\n"))
}

#[test]
fn kill_every_ms_out_of_range_or_a_kill_limit_on_the_supervisor() {
    let text = system(&task("a", 1, "kill_every_ms = 0"));
    assert_errors(&text, &["task \"a\": kill_every_ms: 0 is out of range (1..=3600000 milliseconds)"]);
    let text = system(&task("a", 1, "kill_limit = 3"));
    assert_errors(&text, &["task \"a\": kill_limit: it limits kill_every_ms, which is not set"]);
    // The supervisor may die on purpose (once: nothing restarts it).
    let on_supervisor = |line| system_with("supervisor = true\n", line);
    let limited = "task \"root\": kill_limit: the supervisor dies once: nothing restarts it (remove kill_limit)";
    assert_errors(&on_supervisor("kill_every_ms = 300\nkill_limit = 1"), &[limited]);
    let zero = "task \"root\": kill_every_ms: 0 is out of range (1..=3600000 milliseconds)";
    assert_errors(&on_supervisor("kill_every_ms = 0"), &[zero]);
}

#[test]
fn unknown_supervisor_death_policy() {
    let policy = |value| system_with("name = \"test\"\n", &format!("on_supervisor_death = {value}"));
    let typo =
        "system: on_supervisor_death: no policy \"reboto\" (did you mean \"reboot\"?) (\"halt\" and \"reboot\" are)";
    assert_errors(&policy("\"reboto\""), &[typo]);
    let unknown = "system: on_supervisor_death: no policy \"panic\" (\"halt\" and \"reboot\" are)";
    assert_errors(&policy("\"panic\""), &[unknown]);
    assert_eq!(errors(&policy("1")).len(), 1, "a number is a TOML type error");
}

#[test]
fn soak_kill_every_ms_out_of_range() {
    let soak = |value| system_with("name = \"test\"\n", &format!("soak_kill_every_ms = {value}"));
    assert_errors(&soak("0"), &["system: soak_kill_every_ms: 0 is out of range (1..=3600000 milliseconds)"]);
    let long = "system: soak_kill_every_ms: 3600001 is out of range (1..=3600000 milliseconds)";
    assert_errors(&soak("3600001"), &[long]);
    assert_eq!(errors(&soak("\"5s\"")).len(), 1, "a string is a TOML type error");
}
