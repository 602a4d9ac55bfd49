"""What every room uses, importing nothing from the rest of the package:

    errors.py    how a command reports a failure: one line on stderr and an exit status
    outputs.py   every file or folder a command will write, checked when its options are parsed
    hardware.py  the precision this processor runs natively (bf16 or fp32), and threads
    tokens.py    Hugging Face tokens, from every source, redacted from anything printed
    memory.py    how much memory a device has and a U-Net needs: the bounds of training and sampling
    options.py   numeric options within documented ranges, refused when parsed
"""
