/* The console's static files, built into the binary (web/). */
	.section .rodata
	.globl console_css
	.globl console_css_end
	.type console_css, @object
console_css:
	.incbin "web/console.css"
console_css_end:
	.byte 0
	.section .note.GNU-stack,"",@progbits
