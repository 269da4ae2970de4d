from dev.emulator.server import main

main()
