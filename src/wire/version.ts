/** The wire version every envelope carries as `v`; a reader accepts exactly the versions it knows. */
export const WIRE_VERSION = 1;
