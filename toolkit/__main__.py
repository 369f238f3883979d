from toolkit import main

main()
