//! The PC's legacy ways of resetting the machine from a port: the
//! chipset's reset control register at 0xCF9 (Intel PIIX4 datasheet
//! 4.1.17 "RC—Reset Control Register"; ICH: "RST_CNT"), and the 8042
//! keyboard controller's output-port pulse (command 0xFE at port 0x64, as
//! Linux's `reboot=k` and most BIOSes use it).
//!
//! The keyboard controller is the minimum a reboot path needs: a status
//! register (no input pending, so a guest waiting for IBF to clear goes on;
//! system flag set, self-test passed), the command byte, the self-tests,
//! the output port (bit 0 is the CPU reset line, active low: a write of the
//! output port with bit 0 clear or a pulse command 0xF0–0xFF with bit 0
//! clear resets). No keyboard or mouse is behind it: bytes for the device
//! are dropped.

/// The reset control register.
pub const RESET_CONTROL: u16 = 0xcf9;
/// RC bits: SYS_RST (hard reset when RST_CPU goes 0→1), RST_CPU, and the
/// ICH's FULL_RST.
pub const RC_SYS_RST: u8 = 1 << 1;
pub const RC_RST_CPU: u8 = 1 << 2;
pub const RC_FULL_RST: u8 = 1 << 3;

/// The 8042's data and command/status ports.
pub const KBC_DATA: u16 = 0x60;
pub const KBC_COMMAND: u16 = 0x64;
/// Status bits: output buffer full, input buffer full, system flag.
pub const KBC_OBF: u8 = 1 << 0;
pub const KBC_IBF: u8 = 1 << 1;
pub const KBC_SYSTEM: u8 = 1 << 2;
/// Controller commands.
pub mod cmd {
    pub const READ_COMMAND_BYTE: u8 = 0x20;
    pub const WRITE_COMMAND_BYTE: u8 = 0x60;
    pub const SELF_TEST: u8 = 0xaa;
    pub const INTERFACE_TEST: u8 = 0xab;
    pub const READ_OUTPUT_PORT: u8 = 0xd0;
    pub const WRITE_OUTPUT_PORT: u8 = 0xd1;
    /// 0xF0–0xFF pulse the output port's bits 3:0 that are clear in the
    /// command; 0xFE pulses bit 0, the reset line.
    pub const PULSE_FIRST: u8 = 0xf0;
    pub const PULSE_RESET: u8 = 0xfe;
}
/// The output port: bit 0 the reset line (high: running), bit 1 A20.
const OUTPUT_RESET: u8 = 1 << 0;
const OUTPUT_A20: u8 = 1 << 1;
/// The self-test's answer.
const SELF_TEST_OK: u8 = 0x55;
/// The command byte after the BIOS: keyboard interrupt, system flag, translation.
const COMMAND_BYTE_AT_BOOT: u8 = 0x45;

/// The reset control register at 0xCF9.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResetControl {
    value: u8,
}

impl ResetControl {
    pub const fn read(&self) -> u8 {
        self.value
    }

    /// A byte written: true if it resets the machine (RST_CPU going from
    /// 0 to 1; SYS_RST picks a hard or a soft reset, both of which restart
    /// the partition here). RST_CPU itself reads back 0.
    pub fn write(&mut self, value: u8) -> bool {
        let reset = value & RC_RST_CPU != 0 && self.value & RC_RST_CPU == 0;
        self.value = value & (RC_SYS_RST | RC_FULL_RST);
        reset
    }
}

/// What the 8042 expects next at port 0x60.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Expect {
    #[default]
    Device,
    CommandByte,
    OutputPort,
}

/// The 8042 keyboard controller (reset path only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kbc {
    command_byte: u8,
    output_port: u8,
    output: Option<u8>,
    expect: Expect,
}

impl Default for Kbc {
    fn default() -> Kbc {
        Kbc::new()
    }
}

impl Kbc {
    pub const fn new() -> Kbc {
        Kbc {
            command_byte: COMMAND_BYTE_AT_BOOT,
            output_port: OUTPUT_RESET | OUTPUT_A20,
            output: None,
            expect: Expect::Device,
        }
    }

    pub const fn claims(port: u16) -> bool {
        port == KBC_DATA || port == KBC_COMMAND
    }

    /// A byte read: the status at 0x64, the output buffer at 0x60 (0 when
    /// empty).
    pub fn read(&mut self, port: u16) -> u8 {
        match port {
            KBC_COMMAND => KBC_SYSTEM | if self.output.is_some() { KBC_OBF } else { 0 },
            _ => self.output.take().unwrap_or(0),
        }
    }

    /// A byte written: true if it pulses the reset line.
    pub fn write(&mut self, port: u16, value: u8) -> bool {
        if port == KBC_DATA {
            match core::mem::take(&mut self.expect) {
                Expect::CommandByte => self.command_byte = value,
                Expect::OutputPort => {
                    self.output_port = value;
                    return value & OUTPUT_RESET == 0;
                }
                // No device behind the controller.
                Expect::Device => {}
            }
            return false;
        }
        self.expect = Expect::Device;
        match value {
            cmd::READ_COMMAND_BYTE => self.output = Some(self.command_byte),
            cmd::WRITE_COMMAND_BYTE => self.expect = Expect::CommandByte,
            cmd::SELF_TEST => self.output = Some(SELF_TEST_OK),
            cmd::INTERFACE_TEST => self.output = Some(0),
            cmd::READ_OUTPUT_PORT => self.output = Some(self.output_port),
            cmd::WRITE_OUTPUT_PORT => self.expect = Expect::OutputPort,
            v if v >= cmd::PULSE_FIRST => return v & OUTPUT_RESET == 0,
            _ => {}
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rst_cpu_rising_resets_hard_or_soft() {
        let mut rc = ResetControl::default();
        assert!(!rc.write(RC_SYS_RST));
        assert_eq!(rc.read(), RC_SYS_RST);
        assert!(rc.write(RC_SYS_RST | RC_RST_CPU), "0x06: hard reset");
        let mut rc = ResetControl::default();
        assert!(rc.write(0x0e), "0x0E: full reset");
        assert_eq!(rc.read(), RC_SYS_RST | RC_FULL_RST, "RST_CPU reads 0");
        assert!(ResetControl::default().write(RC_RST_CPU), "0x04: soft reset");
        assert!(!ResetControl::default().write(0x02));
    }

    #[test]
    fn the_keyboard_controller_pulses_reset_and_answers_what_reboot_paths_ask() {
        let mut k = Kbc::new();
        assert_eq!(k.read(KBC_COMMAND) & (KBC_IBF | KBC_OBF), 0, "kb_wait sees no input pending");
        assert!(!k.write(KBC_COMMAND, cmd::SELF_TEST));
        assert_eq!(k.read(KBC_COMMAND) & KBC_OBF, KBC_OBF);
        assert_eq!(k.read(KBC_DATA), 0x55);
        assert!(!k.write(KBC_COMMAND, cmd::WRITE_COMMAND_BYTE));
        assert!(!k.write(KBC_DATA, 0x65));
        k.write(KBC_COMMAND, cmd::READ_COMMAND_BYTE);
        assert_eq!(k.read(KBC_DATA), 0x65);
        assert!(!k.write(KBC_COMMAND, 0xff), "pulse nothing");
        assert!(k.write(KBC_COMMAND, cmd::PULSE_RESET));
        assert!(k.write(KBC_COMMAND, 0xf0), "pulse every line, reset included");
        k.write(KBC_COMMAND, cmd::WRITE_OUTPUT_PORT);
        assert!(k.write(KBC_DATA, 0x02), "output port with the reset line low");
        assert!(!k.write(KBC_DATA, 0x02), "a device byte: dropped");
    }
}
