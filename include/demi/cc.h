/* Portability macros shared by the public headers: attributes and empty SAL annotation words. */
#ifndef DEMI_CC_H_IS_INCLUDED
#define DEMI_CC_H_IS_INCLUDED

/* SAL words (Microsoft source annotations) carry no meaning outside MSVC. */
#ifndef _MSC_VER
#define _In_
#define _In_z_
#define _In_opt_
#define _Inout_
#define _Out_
#define _In_reads_(n)
#define _In_reads_bytes_(n)
#define _Out_writes_to_(s, c)
#define _Out_writes_to_opt_(s, c)
#endif

/*
 * The library itself is compiled with DEMI_BUILDING_LIBRARY defined so that
 * the nonnull attribute is not visible to it: programs do pass NULL, and GCC
 * would otherwise be entitled to delete the library's own NULL checks.
 */
#if defined(__GNUC__) && !defined(DEMI_BUILDING_LIBRARY)
#define ATTR_NONNULL(...) __attribute__((nonnull(__VA_ARGS__)))
#else
#define ATTR_NONNULL(...)
#endif

#if defined(__GNUC__)
#define ATTR_NODISCARD __attribute__((warn_unused_result))
#else
#define ATTR_NODISCARD
#endif

#endif /* DEMI_CC_H_IS_INCLUDED */
