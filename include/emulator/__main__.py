from include.emulator.server import main

main()
