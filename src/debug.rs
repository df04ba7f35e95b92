//! GSDEBUG: debugging switches for the stack machinery.
//!
//! GSDEBUG works like Go's GODEBUG: a comma-separated list of `name=value`
//! items, for example `GSDEBUG=efence=1,stackpoison=1`. Every value is a
//! decimal integer, 0 for off and 1 for on. Anything the parser does not
//! understand is reported and ignored; it never stops the program.

/// The switches read from GSDEBUG. The defaults are what a production
/// runtime wants; every switch except `adaptivestackstart` makes the runtime
/// slower in exchange for catching bugs early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DebugFlags {
    /// Every stack comes straight from the system: its own mapping with a
    /// PROT_NONE guard page below it, unmapped when freed.
    pub efence: bool,
    /// Freed stacks become PROT_NONE and are never reused, so any later
    /// access faults. Implies allocation from the system, as with `efence`.
    pub faultonfree: bool,
    /// Fill freed stacks with `STACK_POISON_FREE` and stacks handed out again
    /// from the pools with `STACK_POISON_NEW`.
    pub stackpoison: bool,
    /// Bypass the per-thread stack caches; every stack comes from the pool.
    pub stacknocache: bool,
    /// Move a goroutine's stack at every opportunity (used by the scheduler).
    pub stackforcemove: bool,
    /// Never shrink stacks during a scan cycle.
    pub gcshrinkstackoff: bool,
    /// Choose the starting stack size from the average stack use seen by
    /// scans, instead of always starting at the minimum.
    pub adaptivestackstart: bool,
}

impl Default for DebugFlags {
    fn default() -> DebugFlags {
        DebugFlags {
            efence: false,
            faultonfree: false,
            stackpoison: false,
            stacknocache: false,
            stackforcemove: false,
            gcshrinkstackoff: false,
            adaptivestackstart: true,
        }
    }
}

impl DebugFlags {
    /// Parse a GSDEBUG string: comma-separated `name=value` (like GODEBUG).
    /// Values are decimal integers; 0 = off, 1 = on (any other integer: a
    /// warning, and the setting is ignored). Empty items are skipped and
    /// blanks around an item are ignored. An unknown name, a missing `=`, or
    /// a value that is not 0 or 1 calls `warn` with a message naming the
    /// item. When a name appears twice, the last valid setting wins.
    pub fn parse(s: &str, warn: &mut dyn FnMut(&str)) -> DebugFlags {
        let mut flags = DebugFlags::default();
        for item in s.split(',').map(str::trim).filter(|item| !item.is_empty()) {
            let Some((name, value)) = item.split_once('=') else {
                warn(&format!("GSDEBUG: missing \"=\" in \"{item}\" (ignored)"));
                continue;
            };
            let Some(field) = flags.field(name) else {
                warn(&format!("GSDEBUG: unknown setting \"{name}\" (ignored)"));
                continue;
            };
            match value.parse::<i64>() {
                Ok(0) => *field = false,
                Ok(1) => *field = true,
                _ => warn(&format!(
                    "GSDEBUG: bad value \"{value}\" for {name} (ignored)"
                )),
            }
        }
        flags
    }

    /// Read the GSDEBUG environment variable (unset means the defaults).
    /// Warnings go to stderr prefixed "gstack: ". Call this once at runtime
    /// start-up; the environment is not read again.
    pub fn from_env() -> DebugFlags {
        match std::env::var_os("GSDEBUG") {
            None => DebugFlags::default(),
            Some(value) => DebugFlags::parse(&value.to_string_lossy(), &mut |msg| {
                eprintln!("gstack: {msg}")
            }),
        }
    }

    // field returns the switch called `name`, or None if there is none.
    fn field(&mut self, name: &str) -> Option<&mut bool> {
        Some(match name {
            "efence" => &mut self.efence,
            "faultonfree" => &mut self.faultonfree,
            "stackpoison" => &mut self.stackpoison,
            "stacknocache" => &mut self.stacknocache,
            "stackforcemove" => &mut self.stackforcemove,
            "gcshrinkstackoff" => &mut self.gcshrinkstackoff,
            "adaptivestackstart" => &mut self.adaptivestackstart,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::DebugFlags;

    // parse_warn parses `s` and returns the flags and every warning given.
    fn parse_warn(s: &str) -> (DebugFlags, Vec<String>) {
        let mut warnings = Vec::new();
        let flags = DebugFlags::parse(s, &mut |msg| warnings.push(msg.to_string()));
        (flags, warnings)
    }

    // parse_ok parses `s`, which must give no warning.
    fn parse_ok(s: &str) -> DebugFlags {
        let (flags, warnings) = parse_warn(s);
        assert!(warnings.is_empty(), "{s:?} warned: {warnings:?}");
        flags
    }

    #[test]
    fn defaults() {
        let d = DebugFlags::default();
        assert!(d.adaptivestackstart);
        assert_eq!(
            d,
            DebugFlags {
                efence: false,
                faultonfree: false,
                stackpoison: false,
                stacknocache: false,
                stackforcemove: false,
                gcshrinkstackoff: false,
                adaptivestackstart: true,
            }
        );
    }

    #[test]
    fn empty_string_gives_defaults() {
        assert_eq!(parse_ok(""), DebugFlags::default());
        assert_eq!(parse_ok(",,"), DebugFlags::default());
        assert_eq!(parse_ok(" , "), DebugFlags::default());
    }

    #[test]
    fn every_name_on_and_off() {
        type Get = fn(&DebugFlags) -> bool;
        let names: [(&str, Get); 7] = [
            ("efence", |d| d.efence),
            ("faultonfree", |d| d.faultonfree),
            ("stackpoison", |d| d.stackpoison),
            ("stacknocache", |d| d.stacknocache),
            ("stackforcemove", |d| d.stackforcemove),
            ("gcshrinkstackoff", |d| d.gcshrinkstackoff),
            ("adaptivestackstart", |d| d.adaptivestackstart),
        ];
        for (name, get) in names {
            let on = parse_ok(&format!("{name}=1"));
            assert!(get(&on), "{name}=1");
            let off = parse_ok(&format!("{name}=0"));
            assert!(!get(&off), "{name}=0");
            // Only the named switch changes.
            for (other, get_other) in names {
                if other != name {
                    assert_eq!(get_other(&on), get_other(&DebugFlags::default()), "{other}");
                    assert_eq!(
                        get_other(&off),
                        get_other(&DebugFlags::default()),
                        "{other}"
                    );
                }
            }
        }
    }

    #[test]
    fn several_items_and_last_wins() {
        let d = parse_ok("efence=1,stackpoison=1,adaptivestackstart=0");
        assert!(d.efence && d.stackpoison && !d.adaptivestackstart);
        assert!(!d.faultonfree && !d.stacknocache);
        let d = parse_ok("efence=1,efence=0");
        assert!(!d.efence);
        let d = parse_ok(" stacknocache=1 ,, faultonfree=1,");
        assert!(d.stacknocache && d.faultonfree);
    }

    #[test]
    fn unknown_names_warn_and_are_ignored() {
        let (d, w) = parse_warn("foo=1,efence=1,Efence=1");
        assert!(d.efence);
        assert_eq!(
            w,
            [
                "GSDEBUG: unknown setting \"foo\" (ignored)",
                "GSDEBUG: unknown setting \"Efence\" (ignored)",
            ]
        );
        let (d, w) = parse_warn("=1");
        assert_eq!(d, DebugFlags::default());
        assert_eq!(w, ["GSDEBUG: unknown setting \"\" (ignored)"]);
    }

    #[test]
    fn missing_equals_warns() {
        let (d, w) = parse_warn("efence,stackpoison=1");
        assert!(!d.efence && d.stackpoison);
        assert_eq!(w, ["GSDEBUG: missing \"=\" in \"efence\" (ignored)"]);
    }

    #[test]
    fn bad_values_warn_and_keep_the_old_setting() {
        for bad in [
            "x",
            "",
            "2",
            "-1",
            "1.0",
            "on",
            "true",
            "99999999999999999999",
        ] {
            let (d, w) = parse_warn(&format!("efence={bad},adaptivestackstart={bad}"));
            assert_eq!(d, DebugFlags::default(), "value {bad:?}");
            assert_eq!(
                w,
                [
                    format!("GSDEBUG: bad value \"{bad}\" for efence (ignored)"),
                    format!("GSDEBUG: bad value \"{bad}\" for adaptivestackstart (ignored)"),
                ],
                "value {bad:?}"
            );
        }
        // A bad value does not undo an earlier good one.
        let (d, w) = parse_warn("efence=1,efence=7");
        assert!(d.efence);
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn decimal_forms_of_0_and_1() {
        assert!(parse_ok("efence=01").efence);
        assert!(parse_ok("efence=+1").efence);
        assert!(!parse_ok("adaptivestackstart=00").adaptivestackstart);
    }
}
