// The engine's stable error codes: every EngineError (and CodedError) the native code throws carries
// one of these. native/errors.ts lists the same codes for TypeScript, with what each means;
// test/native/error_codes.test.ts keeps the two lists equal and checks every code thrown here.
#pragma once

namespace hotpatch {

inline constexpr const char* kErrorCodes[] = {
    "EELF_OPEN",
    "EBAD_ELF",
    "ENOPROCESS",
    "EZOMBIE",
    "ETARGET_EXITED",
    "EPERM_PTRACE",
    "ETRACED",
    "ESTOP_TIMEOUT",
    "EUNSAFE_TIMEOUT",
    "ECANCELLED",
    "ENOSYMBOL",
    "EAMBIGUOUS_SYMBOL",
    "EFUNC_TOO_SHORT",
    "EUNSUPPORTED_RELOC",
    "EUNSUPPORTED_PATCH",
    "ENOPATCH",
    "EPATCH_EXISTS",
    "EPATCH_ACTIVE",
    "EPATCH_IN_USE",
    "EREVERT_ORDER",
    "ECODE_CHANGED",
    "ENOSPACE",
    "EMOUNT_NS",
    "EUNSUPPORTED_LOADER",
    "EDLOPEN",
    "ESECCOMP",
    "EINJECT",
    "EMEMORY",
    "EBAD_DESCRIPTOR",
    "ETOO_MANY_PATCHES",
    "EBAD_ARGUMENT",
    "EPERM_PROC_EVENTS",
    "EINTERNAL",
};

}  // namespace hotpatch
