#include "textflag.h"

// func kernel6x16(k int, x *float32, ldx int, panel, dst *float32, ldd int, bias *float32)
//
// Six rows of x (row stride ldx) times a panel of sixteen columns ([k, 16],
// contiguous), plus bias, into six rows of dst (row stride ldd). Y0..Y11
// accumulate the 6×16 block; Y12, Y13 hold a panel row, Y14, Y15 a
// broadcast element of x.
TEXT ·kernel6x16(SB), NOSPLIT, $0-56
	MOVQ k+0(FP), CX
	MOVQ x+8(FP), SI
	MOVQ ldx+16(FP), R8
	MOVQ panel+24(FP), DI
	MOVQ dst+32(FP), DX
	MOVQ ldd+40(FP), R9
	MOVQ bias+48(FP), AX
	SHLQ $2, R8               // x row stride in bytes
	SHLQ $2, R9               // dst row stride in bytes
	LEAQ (SI)(R8*2), BX
	ADDQ R8, BX               // BX = row 3 of x

	VMOVUPS (AX), Y0
	VMOVUPS 32(AX), Y1
	VMOVAPS Y0, Y2
	VMOVAPS Y1, Y3
	VMOVAPS Y0, Y4
	VMOVAPS Y1, Y5
	VMOVAPS Y0, Y6
	VMOVAPS Y1, Y7
	VMOVAPS Y0, Y8
	VMOVAPS Y1, Y9
	VMOVAPS Y0, Y10
	VMOVAPS Y1, Y11

	TESTQ CX, CX
	JEQ   store

loop:
	VMOVUPS      (DI), Y12
	VMOVUPS      32(DI), Y13
	VBROADCASTSS (SI), Y14
	VFMADD231PS  Y12, Y14, Y0
	VFMADD231PS  Y13, Y14, Y1
	VBROADCASTSS (SI)(R8*1), Y15
	VFMADD231PS  Y12, Y15, Y2
	VFMADD231PS  Y13, Y15, Y3
	VBROADCASTSS (SI)(R8*2), Y14
	VFMADD231PS  Y12, Y14, Y4
	VFMADD231PS  Y13, Y14, Y5
	VBROADCASTSS (BX), Y15
	VFMADD231PS  Y12, Y15, Y6
	VFMADD231PS  Y13, Y15, Y7
	VBROADCASTSS (BX)(R8*1), Y14
	VFMADD231PS  Y12, Y14, Y8
	VFMADD231PS  Y13, Y14, Y9
	VBROADCASTSS (BX)(R8*2), Y15
	VFMADD231PS  Y12, Y15, Y10
	VFMADD231PS  Y13, Y15, Y11
	ADDQ         $4, SI
	ADDQ         $4, BX
	ADDQ         $64, DI
	DECQ         CX
	JNZ          loop

store:
	VMOVUPS Y0, (DX)
	VMOVUPS Y1, 32(DX)
	VMOVUPS Y2, (DX)(R9*1)
	VMOVUPS Y3, 32(DX)(R9*1)
	VMOVUPS Y4, (DX)(R9*2)
	VMOVUPS Y5, 32(DX)(R9*2)
	LEAQ    (DX)(R9*2), DX
	ADDQ    R9, DX
	VMOVUPS Y6, (DX)
	VMOVUPS Y7, 32(DX)
	VMOVUPS Y8, (DX)(R9*1)
	VMOVUPS Y9, 32(DX)(R9*1)
	VMOVUPS Y10, (DX)(R9*2)
	VMOVUPS Y11, 32(DX)(R9*2)
	VZEROUPPER
	RET

// func kernel12x16(k int, x *float32, ldx int, panel, dst *float32, ldd int, bias *float32)
//
// Twelve rows of x (row stride ldx) times a panel of sixteen columns
// ([k, 16], contiguous), plus bias, into twelve rows of dst (row stride
// ldd). Z0..Z11 accumulate one row each; Z12 holds a panel row, and each
// element of x is broadcast from memory by the multiply-add itself. SI, BX,
// R10 and R11 point at rows 0, 3, 6 and 9 of x.
TEXT ·kernel12x16(SB), NOSPLIT, $0-56
	MOVQ k+0(FP), CX
	MOVQ x+8(FP), SI
	MOVQ ldx+16(FP), R8
	MOVQ panel+24(FP), DI
	MOVQ dst+32(FP), DX
	MOVQ ldd+40(FP), R9
	MOVQ bias+48(FP), AX
	SHLQ $2, R8
	SHLQ $2, R9
	LEAQ (SI)(R8*2), BX
	ADDQ R8, BX
	LEAQ (BX)(R8*2), R10
	ADDQ R8, R10
	LEAQ (R10)(R8*2), R11
	ADDQ R8, R11

	VMOVUPS (AX), Z0
	VMOVAPS Z0, Z1
	VMOVAPS Z0, Z2
	VMOVAPS Z0, Z3
	VMOVAPS Z0, Z4
	VMOVAPS Z0, Z5
	VMOVAPS Z0, Z6
	VMOVAPS Z0, Z7
	VMOVAPS Z0, Z8
	VMOVAPS Z0, Z9
	VMOVAPS Z0, Z10
	VMOVAPS Z0, Z11

	TESTQ CX, CX
	JEQ   store512

loop512:
	VMOVUPS          (DI), Z12
	VFMADD231PS.BCST (SI), Z12, Z0
	VFMADD231PS.BCST (SI)(R8*1), Z12, Z1
	VFMADD231PS.BCST (SI)(R8*2), Z12, Z2
	VFMADD231PS.BCST (BX), Z12, Z3
	VFMADD231PS.BCST (BX)(R8*1), Z12, Z4
	VFMADD231PS.BCST (BX)(R8*2), Z12, Z5
	VFMADD231PS.BCST (R10), Z12, Z6
	VFMADD231PS.BCST (R10)(R8*1), Z12, Z7
	VFMADD231PS.BCST (R10)(R8*2), Z12, Z8
	VFMADD231PS.BCST (R11), Z12, Z9
	VFMADD231PS.BCST (R11)(R8*1), Z12, Z10
	VFMADD231PS.BCST (R11)(R8*2), Z12, Z11
	ADDQ             $4, SI
	ADDQ             $4, BX
	ADDQ             $4, R10
	ADDQ             $4, R11
	ADDQ             $64, DI
	DECQ             CX
	JNZ              loop512

store512:
	VMOVUPS Z0, (DX)
	VMOVUPS Z1, (DX)(R9*1)
	VMOVUPS Z2, (DX)(R9*2)
	LEAQ    (DX)(R9*2), DX
	ADDQ    R9, DX
	VMOVUPS Z3, (DX)
	VMOVUPS Z4, (DX)(R9*1)
	VMOVUPS Z5, (DX)(R9*2)
	LEAQ    (DX)(R9*2), DX
	ADDQ    R9, DX
	VMOVUPS Z6, (DX)
	VMOVUPS Z7, (DX)(R9*1)
	VMOVUPS Z8, (DX)(R9*2)
	LEAQ    (DX)(R9*2), DX
	ADDQ    R9, DX
	VMOVUPS Z9, (DX)
	VMOVUPS Z10, (DX)(R9*1)
	VMOVUPS Z11, (DX)(R9*2)
	VZEROUPPER
	RET
