/** Reading relocatable objects (.o): sections with their bytes, symbols and RELA relocations. */
import { addon } from "./binding.js";
import { EngineError } from "./errors.js";

/** One section, by its index in the object; index 0 is the null section. */
export interface ObjectSection {
  name: string;
  /** SHT_* */
  type: number;
  /** SHF_* */
  flags: number;
  size: number;
  align: number;
  entsize: number;
  link: number;
  info: number;
  /** The section's contents; empty for SHT_NOBITS (.bss). */
  bytes: Buffer;
}

/** One entry of `.symtab`, by its index; index 0 is the null symbol. */
export interface ObjectSymbol {
  name: string;
  value: number;
  size: number;
  /** STT_* */
  type: number;
  /** STB_* */
  bind: number;
  /** STV_* */
  visibility: number;
  /** Section index, or SHN_UNDEF (0), SHN_ABS (0xfff1), SHN_COMMON (0xfff2). */
  shndx: number;
}

/** One RELA relocation. */
export interface ObjectRelocation {
  /** Index of the section it patches. */
  section: number;
  offset: number;
  /** R_X86_64_* */
  type: number;
  /** Index into `symbols`. */
  symbol: number;
  addend: number;
}

/** An x86-64 ELF64 relocatable object. */
export interface ObjectFile {
  path: string;
  sections: ObjectSection[];
  symbols: ObjectSymbol[];
  relocations: ObjectRelocation[];
}

/** Reads a relocatable object with libelf. Throws EngineError (EELF_OPEN, EBAD_ELF). */
export async function readObject(path: string): Promise<ObjectFile> {
  try {
    return await addon.readObject(path);
  } catch (err) {
    throw EngineError.from(err, { path });
  }
}
