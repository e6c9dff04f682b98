from tallyd.cli import main

main()
