//! ferry-emulator
